"""Event rules for one source: object lifecycle, zones and lines over tracked objects.

Each frame's boxes go through the source's `Tracker`; `ObjectRules` turns what happened to
the tracks into occurrences, in order:

- `object_appeared` once a track is confirmed, `object_left` once it ends;
- `zone_entered` / `zone_exited` when an object's anchor moves into or out of a polygon;
- `line_crossed` when the anchor's path between two observations crosses a line segment.

A boundary has a band of `hysteresis` x the object's box height on both sides (at least
`MIN_BAND_PX`): inside the band an object keeps the state it had, so a box jittering on a
boundary gives no burst of events. Rules also run while a track is still tentative; what
they find is held back and emitted right after `object_appeared`, so nothing an object does
in its first frames is lost, and boxes that never become an object make no events.
An object that ends inside a zone exits it, so every `zone_entered` has its `zone_exited`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from streamer.analytics.geometry import (
    Point,
    anchor_point,
    polygon_contour,
    segments_intersect,
    signed_distance_to_line,
    signed_distance_to_polygon,
)
from streamer.analytics.tracking import Track, Tracker, TrackerSettings
from streamer.config.schema import LineConfig, PipelineConfig, ZoneConfig
from streamer.events.event import Anchor, Direction, EventType, LeftReason
from streamer.runtime.messages import Detections, Frame

MIN_BAND_PX = 2.0


@dataclass(frozen=True)
class ZoneRule:
    name: str
    contour: np.ndarray  # (N, 1, 2) float32, source pixels
    class_ids: frozenset[int] | None  # None: every class
    anchor: Anchor
    hysteresis: float

    @classmethod
    def from_config(cls, zone: ZoneConfig, class_ids: frozenset[int] | None) -> ZoneRule:
        """`class_ids`: the ids of the zone's labels, as the model numbers them."""
        return cls(
            zone.name, polygon_contour(zone.polygon), class_ids, zone.anchor, zone.hysteresis
        )


@dataclass(frozen=True)
class LineRule:
    name: str
    a: Point
    b: Point
    class_ids: frozenset[int] | None
    anchor: Anchor
    hysteresis: float

    @classmethod
    def from_config(cls, line: LineConfig, class_ids: frozenset[int] | None) -> LineRule:
        a, b = line.points
        return cls(line.name, a, b, class_ids, line.anchor, line.hysteresis)


@dataclass(frozen=True)
class ObjectSnapshot:
    """A tracked object as an event reports it."""

    track_id: int
    class_id: int
    confidence: float
    bbox: tuple[float, float, float, float]
    first_seen_at: float  # wall clock
    last_seen_at: float
    dwell_s: float | None  # object_left: seen for; zone_exited: inside for; else None


@dataclass(frozen=True)
class Occurrence:
    type: EventType
    frame: Frame  # the frame that showed it
    object: ObjectSnapshot
    zone: str | None = None
    line: str | None = None
    direction: Direction | None = None  # on line_crossed
    reason: LeftReason | None = None  # on object_left


@dataclass
class _LineState:
    side: int = 0  # -1, +1, or 0 before the object was first clear of the band
    at: Point = (0.0, 0.0)  # where the anchor was when the side was last decided


@dataclass
class _ObjectState:
    """What the rules remember of one track."""

    first_seen_at: float
    last_seen_at: float = 0.0
    inside_since: dict[str, float] = field(default_factory=dict)  # zone -> stream seconds
    outside: set[str] = field(default_factory=set)  # zones the object is known to be out of
    lines: dict[str, _LineState] = field(default_factory=dict)
    held: list[Occurrence] = field(default_factory=list)  # found while tentative


class ObjectRules:
    """Tracking plus zone and line rules for one source."""

    def __init__(self, tracker: Tracker, zones: list[ZoneRule], lines: list[LineRule]) -> None:
        self._tracker = tracker
        self._zones = zones
        self._lines = lines
        self._objects: dict[int, _ObjectState] = {}
        self._last_frame: Frame | None = None
        self.track_ids: dict[int, int] = {}
        """Detection index -> track id of the objects seen in the last frame."""

    def on_frame(self, frame: Frame, detections: Detections) -> list[Occurrence]:
        self._last_frame = frame
        update = self._tracker.update(frame.time_s, detections, (frame.height, frame.width))
        self.track_ids = {t.detection: t.track_id for t in update.seen if t.confirmed}
        out: list[Occurrence] = []
        for track in update.ended:
            out += self._end(track, frame, LeftReason.LOST)
        for track in update.discarded:
            self._objects.pop(track.track_id, None)
        newly_confirmed = {t.track_id for t in update.confirmed}
        for track in sorted(update.seen, key=lambda t: t.track_id):
            state = self._objects.get(track.track_id)
            if state is None:
                state = self._objects[track.track_id] = _ObjectState(frame.captured_at)
            state.last_seen_at = frame.captured_at
            found = self._judge(track, state, frame)
            if not track.confirmed:
                state.held += found
                continue
            if track.track_id in newly_confirmed:
                out.append(self._occurrence(EventType.OBJECT_APPEARED, track, state, frame))
                out += state.held
                state.held = []
            out += found
        return out

    def on_still(self, frame: Frame) -> None:
        """A frame in which nothing moved: the objects stay where they were, with the
        same boxes (`track_ids` stays that of the last frame the model saw)."""
        self._last_frame = frame
        for track in self._tracker.hold(frame.time_s):
            state = self._objects.get(track.track_id)
            if state is not None:
                state.last_seen_at = frame.captured_at

    def on_end(self, reason: LeftReason) -> list[Occurrence]:
        """The source ended (or lost its connection): every object it had leaves."""
        frame = self._last_frame
        tracks = self._tracker.end_all()
        out: list[Occurrence] = []
        if frame is not None:
            for track in tracks:
                out += self._end(track, frame, reason)
        self._objects.clear()
        return out

    @property
    def active_objects(self) -> int:
        return sum(1 for t in self._tracker.tracks if t.confirmed)

    def _end(self, track: Track, frame: Frame, reason: LeftReason) -> list[Occurrence]:
        state = self._objects.pop(track.track_id)
        out = [
            self._occurrence(
                EventType.ZONE_EXITED, track, state, frame, zone=zone,
                dwell_s=max(0.0, track.last_seen_s - since),
            )
            for zone, since in state.inside_since.items()
        ]  # fmt: skip
        left = self._occurrence(EventType.OBJECT_LEFT, track, state, frame, dwell_s=track.dwell_s)
        out.append(replace(left, reason=reason))
        return out

    def _judge(self, track: Track, state: _ObjectState, frame: Frame) -> list[Occurrence]:
        box = track.box.tolist()  # Python floats: cheaper to index than NumPy's, per rule
        height = box[3] - box[1]
        found: list[Occurrence] = []
        for zone in self._zones:
            if zone.class_ids is not None and track.class_id not in zone.class_ids:
                continue
            p = anchor_point(box, zone.anchor)
            distance = signed_distance_to_polygon(zone.contour, p)
            margin = max(MIN_BAND_PX, zone.hysteresis * height)
            if distance >= margin and zone.name not in state.inside_since:
                state.inside_since[zone.name] = frame.time_s
                state.outside.discard(zone.name)
                found.append(
                    self._occurrence(EventType.ZONE_ENTERED, track, state, frame, zone.name)
                )
            elif distance <= -margin and zone.name not in state.outside:
                since = state.inside_since.pop(zone.name, None)
                state.outside.add(zone.name)
                if since is not None:
                    found.append(
                        self._occurrence(
                            EventType.ZONE_EXITED, track, state, frame, zone.name,
                            dwell_s=frame.time_s - since,
                        )
                    )  # fmt: skip
        for line in self._lines:
            if line.class_ids is not None and track.class_id not in line.class_ids:
                continue
            p = anchor_point(box, line.anchor)
            distance = signed_distance_to_line(line.a, line.b, p)
            if abs(distance) < max(MIN_BAND_PX, line.hysteresis * height):
                continue
            side = 1 if distance > 0 else -1
            memory = state.lines.get(line.name)
            if memory is None:  # not setdefault: that would make one for every check
                memory = state.lines[line.name] = _LineState()
            if memory.side == -side and segments_intersect(memory.at, p, line.a, line.b):
                direction = Direction.IN if side > 0 else Direction.OUT
                found.append(
                    self._occurrence(
                        EventType.LINE_CROSSED,
                        track,
                        state,
                        frame,
                        line=line.name,
                        direction=direction,
                    )
                )
            memory.side, memory.at = side, p
        return found

    @staticmethod
    def _occurrence(
        type_: EventType,
        track: Track,
        state: _ObjectState,
        frame: Frame,
        zone: str | None = None,
        *,
        line: str | None = None,
        direction: Direction | None = None,
        dwell_s: float | None = None,
    ) -> Occurrence:
        box = track.box
        snapshot = ObjectSnapshot(
            track_id=track.track_id,
            class_id=track.class_id,
            confidence=track.best_confidence
            if type_ is EventType.OBJECT_LEFT
            else track.confidence,
            bbox=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            first_seen_at=state.first_seen_at,
            last_seen_at=state.last_seen_at,
            dwell_s=dwell_s,
        )
        return Occurrence(type_, frame, snapshot, zone=zone, line=line, direction=direction)


def rules_by_source(
    config: PipelineConfig,
    zones: list[ZoneRule],
    lines: list[LineRule],
    labels: Sequence[str],
    last_track_ids: Mapping[str, int] | None = None,
) -> dict[str, ObjectRules]:
    """A tracker and the zones and lines that apply, per source; none when no event needs
    tracking. `labels`: the model's; `last_track_ids`: per source, the highest track id
    given before in this run (by a shard that died): new ids go on after it."""
    last = last_track_ids or {}
    if not config.tracks_objects:
        return {}
    settings = TrackerSettings.from_config(config.tracking, config.model.confidence, labels)
    # A zone and a line may share a name: each kind is looked up on its own.
    zone_sources = {z.name: z.sources for z in config.zones}
    line_sources = {ln.name: ln.sources for ln in config.lines}

    def on(sources: list[str] | None, source_id: str) -> bool:
        return sources is None or source_id in sources

    return {
        s.id: ObjectRules(
            Tracker(settings, first_id=last.get(s.id, 0) + 1),
            [z for z in zones if on(zone_sources[z.name], s.id)],
            [ln for ln in lines if on(line_sources[ln.name], s.id)],
        )
        for s in config.sources
    }
