"""Makes the events of one pipeline run (DESIGN.md section 6, schema version 1).

`EventFactory` numbers events per source with `seq` 1, 2, 3, ... so that a consumer can
see a gap; it lives on the postprocessing thread, the only place events are made, so the
numbering needs no lock. A restart of the process starts a new `run`; a shard restarted
by its supervisor keeps the run and goes on from the seq its sources had reached.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol

from streamer.analytics.rules import Occurrence
from streamer.events.event import (
    CameraHealth,
    Direction,
    Drift,
    Event,
    EventType,
    FrameRef,
    LeftReason,
    SourceProblem,
    SourceState,
    TrackedObject,
)
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.messages import (
    Attachment,
    Detections,
    Emitted,
    Frame,
    HealthChange,
    SourceStatus,
)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(at_s: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds since the epoch (at `at_s`, default now) then 80
    random bits, 26 characters, sortable by time.

    Written here rather than taken from a package: it is eight lines.
    """
    ms = int((SYSTEM_CLOCK.time() if at_s is None else at_s) * 1000)
    value = ms << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def ulid_ms(ulid: str) -> int:
    """The milliseconds since the epoch a ULID was made at.

    >>> ulid_ms(new_ulid(1764322345.123))
    1764322345123
    """
    value = 0
    for char in ulid[:10]:
        value = value << 5 | _CROCKFORD.index(char)
    return value


class EmitLog(Protocol):
    """Told of every event as it is made: a shard's supervisor learns from it where each
    source's `seq` and track ids had got to when the shard died."""

    def record(self, source_id: str, seq: int, track_id: int | None) -> None: ...


def _round(x: float, digits: int = 3) -> float:
    return round(float(x), digits) + 0.0  # + 0.0 turns -0.0 into 0.0


def frame_ref(frame: Frame) -> FrameRef:
    pts = None if frame.pts_s is None else _round(frame.pts_s)
    return FrameRef(frame.index, pts, _round(frame.captured_at))


class EventFactory:
    def __init__(
        self,
        pipeline: str,
        run_id: str,
        labels: tuple[str, ...],
        clock: Clock = SYSTEM_CLOCK,
        *,
        last_seq: Mapping[str, int] | None = None,
        log: EmitLog | None = None,
    ) -> None:
        """`last_seq`: per source, the seq this run reached before (a restarted shard's
        sources go on after it); `log` is told of each event made."""
        self.pipeline = pipeline
        self.run_id = run_id
        self._labels = labels
        self._clock = clock
        self._seq: Counter[str] = Counter(last_seq or {})
        self._log = log

    def _event(
        self,
        type_: EventType,
        source_id: str,
        frame: FrameRef | None,
        *,
        emitted_at: float | None = None,
        object: TrackedObject | None = None,
        objects: tuple[TrackedObject, ...] = (),
        zone: str | None = None,
        line: str | None = None,
        direction: Direction | None = None,
        status: SourceState | None = None,
        detail: str | None = None,
        reason: SourceProblem | LeftReason | None = None,
        snapshot: str | None = None,
        health: CameraHealth | None = None,
        drift: Drift | None = None,
    ) -> Event:
        self._seq[source_id] += 1
        now = self._clock.time()
        if self._log is not None:
            track_ids = [o.track_id for o in (object, *objects) if o is not None and o.track_id]
            self._log.record(source_id, self._seq[source_id], max(track_ids, default=None))
        return Event(
            id=new_ulid(now),
            run=self.run_id,
            seq=self._seq[source_id],
            type=type_,
            pipeline=self.pipeline,
            source=source_id,
            frame=frame,
            emitted_at=_round(now if emitted_at is None else emitted_at),
            object=object,
            objects=objects,
            zone=zone,
            line=line,
            direction=direction,
            status=status,
            detail=detail,
            reason=reason,
            snapshot=snapshot,
            health=health,
            drift=drift,
        )

    def boxes(
        self, detections: Detections, track_ids: Sequence[int | None] | None = None
    ) -> tuple[TrackedObject, ...]:
        ids = track_ids if track_ids is not None else [None] * len(detections)
        return tuple(
            TrackedObject(
                track_id=track_id,
                label=self._labels[int(c)],
                class_id=int(c),
                confidence=_round(s),
                bbox=(_round(x1, 1), _round(y1, 1), _round(x2, 1), _round(y2, 1)),
            )
            for (x1, y1, x2, y2), s, c, track_id in zip(
                detections.xyxy.tolist(),
                detections.confidence.tolist(),
                detections.class_id.tolist(),
                ids,
                strict=True,
            )
        )

    def detections(
        self, frame: Frame, detections: Detections, track_ids: Sequence[int | None] | None = None
    ) -> Emitted:
        """Every box of a frame; `track_ids`: per box, its object's id (None: no object)."""
        event = self._event(
            EventType.DETECTIONS,
            frame.source_id,
            frame_ref(frame),
            objects=self.boxes(detections, track_ids),
        )
        return Emitted.of(event, frame.captured_ns)

    def occurrence(
        self,
        occurrence: Occurrence,
        timed: bool = True,
        snapshot: str | None = None,
        attachment: Attachment | None = None,
    ) -> Emitted:
        """An object event; `timed`: its frame's latency counts (not for the events a
        source's end causes after its last frame); `snapshot`: where a picture of its
        frame is, `attachment`: the picture, when the Redis sink is to store it."""
        frame = occurrence.frame
        o = occurrence.object
        x1, y1, x2, y2 = (_round(max(v, 0.0), 1) for v in o.bbox)
        tracked = TrackedObject(
            track_id=o.track_id,
            label=self._labels[o.class_id],
            class_id=o.class_id,
            confidence=_round(o.confidence),
            bbox=(x1, y1, x2, y2),
            first_seen=_round(o.first_seen_at),
            last_seen=_round(o.last_seen_at),
            dwell_s=None if o.dwell_s is None else _round(o.dwell_s),
        )
        event = self._event(
            occurrence.type,
            frame.source_id,
            frame_ref(frame),
            object=tracked,
            zone=occurrence.zone,
            line=occurrence.line,
            direction=occurrence.direction,
            reason=occurrence.reason,
            snapshot=snapshot,
        )
        return Emitted.of(event, frame.captured_ns if timed else None, attachment)

    def source_status(self, status: SourceStatus) -> Emitted:
        event = self._event(
            EventType.SOURCE_STATUS,
            status.source_id,
            None,
            emitted_at=status.at,
            status=status.status,
            detail=status.detail,
            reason=status.problem,
        )
        return Emitted.of(event, None)

    def camera_health(self, change: HealthChange) -> Emitted:
        """A camera-health condition raised or cleared, at the frame it changed at."""
        event = self._event(
            EventType.CAMERA_HEALTH,
            change.source_id,
            frame_ref(change.frame),
            health=change.health,
        )
        return Emitted.of(event, None)

    def drift(self, frame: Frame, drift: Drift) -> Emitted:
        """A drift raised or cleared by the window that `frame` closed."""
        event = self._event(EventType.DRIFT, frame.source_id, frame_ref(frame), drift=drift)
        return Emitted.of(event, None)
