"""The event of the contract (DESIGN.md section 6, schema version 1), as one typed class.

A pipeline hands `Event`s to in-process consumers (`Pipeline.events()`, `on_event`) and
writes them to Redis as the JSON of `Event.to_dict()`; `Consumer` reads that JSON back
into the same class with `Event.from_dict()`. The JSON Schema in `event-v1.json` is
tested against both directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamer.enums import StrEnum

SCHEMA_VERSION = 1


class EventType(StrEnum):
    OBJECT_APPEARED = "object_appeared"
    OBJECT_LEFT = "object_left"
    ZONE_ENTERED = "zone_entered"
    ZONE_EXITED = "zone_exited"
    LINE_CROSSED = "line_crossed"
    DETECTIONS = "detections"
    SOURCE_STATUS = "source_status"
    CAMERA_HEALTH = "camera_health"
    DRIFT = "drift"


OBJECT_EVENT_TYPES = (
    EventType.OBJECT_APPEARED,
    EventType.OBJECT_LEFT,
    EventType.ZONE_ENTERED,
    EventType.ZONE_EXITED,
    EventType.LINE_CROSSED,
)
"""The types that follow tracked objects: a pipeline that emits one of them tracks."""


class SourceState(StrEnum):
    """What a `source_status` event reports."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTING = "reconnecting"
    ENDED = "ended"


class SourceProblem(StrEnum):
    """Of a `source_status` event (`reason`): why a source is down, when it is no passing
    outage but something a person must fix; said once, when it is first seen."""

    UNAUTHORIZED = "unauthorized"  # the camera refused the login (401, 403)
    NOT_FOUND = "not_found"  # no such stream on the server (404)
    INVALID_URL = "invalid_url"  # a scheme this cannot read, a host that does not exist


class LeftReason(StrEnum):
    """Of an `object_left` event (`reason`): why the object's track ended."""

    LOST = "lost"  # it was not seen for `tracking.lost_after_s`: it went away
    END_OF_STREAM = "end_of_stream"  # the file or stream ended
    DISCONNECTED = "disconnected"  # the camera dropped (or its source failed)
    SHUTDOWN = "shutdown"  # the pipeline was stopped


class Direction(StrEnum):
    """Of a `line_crossed` event: `in` is towards the side where cross(B - A, P - A) > 0."""

    IN = "in"
    OUT = "out"


class Anchor(StrEnum):
    """The point of an object's box that zones and lines judge it by."""

    BOTTOM_CENTER = "bottom_center"
    CENTER = "center"
    TOP_CENTER = "top_center"


class HealthCondition(StrEnum):
    """Of a `camera_health` event: what is wrong with the camera's picture."""

    BLACKOUT = "blackout"  # no picture: (nearly) all black
    COVERED = "covered"  # most of the scene lost its detail: a hand, tape, a bag
    FROZEN = "frozen"  # the picture stopped changing while time goes on
    MOVED = "moved"  # the scene's fixed edges are no longer where they were
    BLUR = "blur"  # the detail is gone: out of focus, fog, a smeared lens
    BRIGHTNESS = "brightness"  # far darker or brighter than it was: a lamp, the exposure


class AlertState(StrEnum):
    """Of `camera_health` and `drift` events: said once when a condition starts, once
    when it ends."""

    RAISED = "raised"
    CLEARED = "cleared"


class DriftFeature(StrEnum):
    """Of a `drift` event: which part of the detector's output moved away from the
    source's reference profile."""

    CONFIDENCE = "confidence"
    CLASS_MIX = "class_mix"
    BOX_SIZE = "box_size"
    DETECTIONS_PER_FRAME = "detections_per_frame"


@dataclass(frozen=True, slots=True)
class CameraHealth:
    """A `camera_health` event's `health`: a condition raised or cleared."""

    condition: HealthCondition
    state: AlertState
    value: float  # the measure the condition is judged by, at the change
    threshold: float  # the bound it crossed
    since: float  # wall clock: when the condition started (raised) or ended (cleared)

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": str(self.condition),
            "state": str(self.state),
            "value": self.value,
            "threshold": self.threshold,
            "since": self.since,
        }

    @classmethod
    def from_dict(cls, o: dict[str, Any]) -> CameraHealth:
        return cls(
            HealthCondition(o["condition"]),
            AlertState(o["state"]),
            o["value"],
            o["threshold"],
            o["since"],
        )


@dataclass(frozen=True, slots=True)
class Drift:
    """A `drift` event's `drift`: a window of detections judged against the reference."""

    feature: DriftFeature
    score: float  # Jensen-Shannon divergence (bits, 0..1) of the window from the reference
    threshold: float
    state: AlertState
    window_start: float  # wall clock
    window_end: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": str(self.feature),
            "score": self.score,
            "threshold": self.threshold,
            "state": str(self.state),
            "window_start": self.window_start,
            "window_end": self.window_end,
        }

    @classmethod
    def from_dict(cls, o: dict[str, Any]) -> Drift:
        return cls(
            DriftFeature(o["feature"]),
            o["score"],
            o["threshold"],
            AlertState(o["state"]),
            o["window_start"],
            o["window_end"],
        )


class UnknownEventType(ValueError):
    """An event of a type this version does not know (written by a newer streamer)."""


@dataclass(frozen=True, slots=True)
class FrameRef:
    """The frame an event comes from."""

    index: int  # 0-based position among the frames decoded from this source in this run
    pts: float | None  # seconds into the stream
    captured_at: float  # wall clock

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "pts": self.pts, "captured_at": self.captured_at}


@dataclass(frozen=True, slots=True)
class TrackedObject:
    """One object of an event. `first_seen`, `last_seen` and `dwell_s` are None when the
    event does not carry them: object events carry the first two, `object_left` and
    `zone_exited` also `dwell_s`; the boxes of a `detections` event carry none."""

    track_id: int | None  # None: a box of `detections` that is no confirmed object
    label: str
    class_id: int
    confidence: float
    bbox: tuple[float, float, float, float]  # source pixels, x1, y1, x2, y2
    first_seen: float | None = None
    last_seen: float | None = None
    dwell_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "track_id": self.track_id,
            "label": self.label,
            "class_id": self.class_id,
            "confidence": self.confidence,
            "bbox": list(self.bbox),
        }
        if self.first_seen is not None:
            out["first_seen"] = self.first_seen
        if self.last_seen is not None:
            out["last_seen"] = self.last_seen
        if self.dwell_s is not None:
            out["dwell_s"] = self.dwell_s
        return out

    @classmethod
    def from_dict(cls, o: dict[str, Any]) -> TrackedObject:
        x1, y1, x2, y2 = o["bbox"]
        return cls(
            o["track_id"],
            o["label"],
            o["class_id"],
            o["confidence"],
            (x1, y1, x2, y2),
            o.get("first_seen"),
            o.get("last_seen"),
            o.get("dwell_s"),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One event. Which fields are set depends on `type`:

    - object events (`OBJECT_EVENT_TYPES`): `object`; `zone` on zone events; `line` and
      `direction` on `line_crossed`;
    - `detections`: `objects`, every box of the frame;
    - `source_status`: `status`, and `detail` when there is more to say; `frame` is None;
      `reason` when a source is down for something a person must fix (`SourceProblem`);
    - `object_left` also says why in `reason` (`LeftReason`);
    - `camera_health`: `health`; `drift`: `drift` (DESIGN.md section 12), both with
      `object` None and `frame` the frame at which the state changed;
    - object events may name a picture of their frame in `snapshot` (a Redis key, or a
      file path), when the pipeline takes snapshots.

    `entry_id` and `stream` are the id and the key of the Redis stream entry the event
    was read from (None for an event handed over in process); they are not part of the
    event's JSON.
    """

    id: str  # a ULID, unique
    run: str  # a ULID per pipeline run
    seq: int  # 1, 2, 3... per source and run: a gap means events were lost
    type: EventType
    pipeline: str
    source: str
    frame: FrameRef | None
    emitted_at: float  # wall clock
    object: TrackedObject | None = None
    objects: tuple[TrackedObject, ...] = ()
    zone: str | None = None
    line: str | None = None
    direction: Direction | None = None
    status: SourceState | None = None
    detail: str | None = None
    reason: SourceProblem | LeftReason | None = None
    snapshot: str | None = None  # where a picture of its frame is: a Redis key or a file
    health: CameraHealth | None = None
    drift: Drift | None = None
    schema: int = SCHEMA_VERSION
    entry_id: str | None = field(default=None, compare=False)
    stream: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The event's JSON object, as the contract's schema describes it."""
        out: dict[str, Any] = {
            "schema": self.schema,
            "id": self.id,
            "run": self.run,
            "seq": self.seq,
            "type": str(self.type),
            "pipeline": self.pipeline,
            "source": self.source,
            "frame": None if self.frame is None else self.frame.to_dict(),
            "emitted_at": self.emitted_at,
            "zone": self.zone,
            "line": self.line,
            "direction": None if self.direction is None else str(self.direction),
        }
        if self.type is EventType.DETECTIONS:
            out["objects"] = [o.to_dict() for o in self.objects]
        elif self.type is EventType.SOURCE_STATUS:
            out["status"] = None if self.status is None else str(self.status)
            if self.detail is not None:
                out["detail"] = self.detail
        elif self.type is EventType.CAMERA_HEALTH:
            out["object"] = None
            out["health"] = None if self.health is None else self.health.to_dict()
        elif self.type is EventType.DRIFT:
            out["object"] = None
            out["drift"] = None if self.drift is None else self.drift.to_dict()
        else:
            out["object"] = None if self.object is None else self.object.to_dict()
        if self.reason is not None:
            out["reason"] = str(self.reason)
        if self.snapshot is not None:
            out["snapshot"] = self.snapshot
        return out

    @classmethod
    def from_dict(
        cls, e: dict[str, Any], entry_id: str | None = None, stream: str | None = None
    ) -> Event:
        """The event of a JSON object. Keys this version does not know are ignored;
        `UnknownEventType` for a type it does not know, KeyError, TypeError or ValueError
        for an object that is no event."""
        try:
            type_ = EventType(e["type"])
        except ValueError:
            raise UnknownEventType(f"unknown event type {e['type']!r}") from None
        frame, obj, direction, status = e["frame"], e.get("object"), e.get("direction"), None
        reason: SourceProblem | LeftReason | None = None
        if type_ is EventType.SOURCE_STATUS:
            status = SourceState(e["status"])
            reason = None if e.get("reason") is None else SourceProblem(e["reason"])
        elif type_ is EventType.OBJECT_LEFT and e.get("reason") is not None:
            reason = LeftReason(e["reason"])
        return cls(
            id=e["id"],
            run=e["run"],
            seq=e["seq"],
            type=type_,
            pipeline=e["pipeline"],
            source=e["source"],
            frame=None
            if frame is None
            else FrameRef(frame["index"], frame["pts"], frame["captured_at"]),
            emitted_at=e["emitted_at"],
            object=None if obj is None else TrackedObject.from_dict(obj),
            objects=tuple(TrackedObject.from_dict(o) for o in e.get("objects", ())),
            zone=e.get("zone"),
            line=e.get("line"),
            direction=None if direction is None else Direction(direction),
            status=status,
            detail=e.get("detail"),
            reason=reason,
            snapshot=e.get("snapshot"),
            health=None if e.get("health") is None else CameraHealth.from_dict(e["health"]),
            drift=None if e.get("drift") is None else Drift.from_dict(e["drift"]),
            schema=e["schema"],
            entry_id=entry_id,
            stream=stream,
        )
