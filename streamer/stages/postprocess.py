"""The postprocessing stage: raw model output -> boxes in source pixels -> events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from streamer.analytics.boxes import nms, unletterbox
from streamer.analytics.rules import ObjectRules, Occurrence
from streamer.analytics.tracking import TrackerSettings
from streamer.config.schema import PipelineConfig
from streamer.events.event import EventType, LeftReason, SourceState
from streamer.events.factory import EventFactory
from streamer.models import Model, ModelSpec
from streamer.preview.board import FrameBoard, Shown
from streamer.preview.snapshots import EventSnapshots
from streamer.quality.drift import DriftWatch
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.deadlines import WorkEstimate
from streamer.runtime.messages import (
    Control,
    Detections,
    Emitted,
    EndOfStream,
    EndReason,
    HealthChange,
    Inferred,
    SourceStatus,
    Still,
)
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Stage


@dataclass(frozen=True)
class DetectionRules:
    confidence: float
    iou: float
    max_detections: int
    class_ids: frozenset[int] | None  # None: every class

    @classmethod
    def from_config(cls, config: PipelineConfig, spec: ModelSpec) -> DetectionRules:
        """The model section's thresholds and class filter (ConfigError for a label the
        model lacks). When objects are tracked, boxes are decoded down to the tracker's
        low confidence: it takes weak boxes too, to keep tracks alive through occlusions."""
        m = config.model
        confidence = m.confidence
        if config.tracks_objects:
            low = TrackerSettings.from_config(config.tracking, m.confidence).low_confidence
            confidence = min(confidence, low)
        return cls(confidence, m.iou, m.max_detections, spec.class_ids(m.classes, "model.classes"))


def detections_from_output(model: Model, item: Inferred, rules: DetectionRules) -> Detections:
    """Decode one frame's output, filter by class, NMS, and map back to source pixels."""
    tensor_hw = (int(item.prepared.tensor.shape[1]), int(item.prepared.tensor.shape[2]))
    xyxy, scores, class_ids = model.candidates(item.output, tensor_hw, rules.confidence)
    if rules.class_ids is not None:
        wanted = np.isin(class_ids, list(rules.class_ids))
        xyxy, scores, class_ids = xyxy[wanted], scores[wanted], class_ids[wanted]
    keep = nms(xyxy, scores, class_ids, rules.iou, rules.max_detections)
    frame = item.prepared.frame
    return Detections(
        xyxy=unletterbox(xyxy[keep], item.prepared.letterbox, (frame.height, frame.width)),
        confidence=scores[keep].astype(np.float32),
        class_id=class_ids[keep].astype(np.int64),
    )


def left_reason(item: Control) -> LeftReason | None:
    """Why the objects of a source leave at `item`; None: they do not."""
    if isinstance(item, EndOfStream):
        end = item.reason
    elif isinstance(item, HealthChange):
        return None
    elif item.status is SourceState.DISCONNECTED:
        return LeftReason.DISCONNECTED
    elif item.status is SourceState.ENDED:
        end = EndReason(item.detail)  # an ended source's detail is its EndReason
    else:
        return None
    return {
        EndReason.EOF: LeftReason.END_OF_STREAM,
        EndReason.STOPPED: LeftReason.SHUTDOWN,
        EndReason.FAILED: LeftReason.DISCONNECTED,
    }[end]


NO_BOXES = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


class PostprocessStage(Stage[Inferred | Still, Emitted]):
    """Boxes from the model output, then events: every frame's boxes (`detections`) and,
    through each source's tracker and rules, object, zone and line events.

    A still frame (nothing moved, the model did not run) shows the boxes of the last
    frame the model saw, and its objects are held where they were."""

    name = "postprocess"

    def __init__(
        self,
        model: Model,
        rules: DetectionRules,
        factory: EventFactory,
        emit: frozenset[EventType],
        shown_confidence: float,
        objects: dict[str, ObjectRules],
        estimate: WorkEstimate,
        stats: RunStats,
        board: FrameBoard,
        clock: Clock = SYSTEM_CLOCK,
        snapshots: EventSnapshots | None = None,
        drift: Mapping[str, DriftWatch] | None = None,
    ) -> None:
        """`rules.confidence` is the threshold boxes are decoded at (lower than the
        model's confidence when the tracker uses weak boxes); `detections` events and
        `board` show boxes from `confidence` up. `objects`: per source, empty when
        nothing is tracked. `board` gets every frame with its boxes; `snapshots` takes the
        pictures object events carry, if any; `drift` judges each source's boxes, when
        the pipeline watches for drift."""
        self._model = model
        self._rules = rules
        self._factory = factory
        self._emit = emit
        self._shown_confidence = shown_confidence
        self._objects = objects
        self._estimate = estimate
        self._stats = stats
        self._board = board
        self._clock = clock
        self._snapshots = snapshots
        self._drift = drift or {}
        # Per source, the boxes (and their objects' ids) of the last frame the model saw.
        self._last_shown: dict[str, tuple[Detections, tuple[int | None, ...]]] = {}

    def process(self, item: Inferred | Still) -> Iterable[Emitted]:
        started = self._clock.monotonic_ns()
        still = isinstance(item, Still)
        frame = item.frame if isinstance(item, Still) else item.prepared.frame
        objects = self._objects.get(frame.source_id)
        if isinstance(item, Still):
            boxes, ids = self._last_shown.get(frame.source_id, (NO_BOXES, ()))
            occurrences = []
            if objects is not None:
                objects.on_still(frame)
        else:
            self._estimate.record_wait(started - item.finished_ns)
            detections = detections_from_output(self._model, item, self._rules)
            occurrences = objects.on_frame(frame, detections) if objects is not None else []
            # Boxes below the model's confidence only fed the tracker; each box shown
            # carries the id of the object it belongs to, once that object is confirmed.
            shown = np.flatnonzero(detections.confidence >= self._shown_confidence)
            track_ids = objects.track_ids if objects is not None else {}
            boxes = Detections(
                detections.xyxy[shown], detections.confidence[shown], detections.class_id[shown]
            )
            ids = tuple(track_ids.get(int(i)) for i in shown)
            self._last_shown[frame.source_id] = (boxes, ids)
        seen = Shown(frame, boxes, ids)
        self._board.show(seen)
        events = []
        if EventType.DETECTIONS in self._emit:
            events.append(self._factory.detections(frame, boxes, ids))
        if objects is not None:
            events += self._object_events(occurrences, timed=True, shown=seen)
            self._stats.objects_active(frame.source_id, objects.active_objects)
        drift = self._drift.get(frame.source_id)
        if drift is not None and not still:  # a still frame's boxes are not new evidence
            events += self._judge_drift(drift, seen)
        self._stats.events_emitted(len(events))
        self._estimate.record_postprocess(self._clock.monotonic_ns() - started)
        # A frame's latency ends with its events being delivered, or here if it has none.
        no_event_latency = (
            None if events else (self._clock.monotonic_ns() - frame.captured_ns) / 1e6
        )
        late = isinstance(item, Inferred) and item.late
        self._stats.frame_processed(frame.source_id, no_event_latency, late, still)
        return events

    def control(self, item: Control) -> Iterable[Emitted | Control]:
        out: list[Emitted | Control] = []
        objects = self._objects.get(item.source_id)
        # A source that ended or lost its connection no longer shows its objects: they left.
        reason = left_reason(item)
        if reason is not None:
            self._last_shown.pop(item.source_id, None)
        if objects is not None and reason is not None:
            out += self._object_events(objects.on_end(reason), timed=False)
            self._stats.objects_active(item.source_id, 0)
        if isinstance(item, SourceStatus):
            out.append(self._factory.source_status(item))
        elif isinstance(item, HealthChange):
            out.append(self._factory.camera_health(item))
        self._board.control(item)
        self._stats.events_emitted(sum(isinstance(e, Emitted) for e in out))
        if isinstance(item, EndOfStream):
            out.append(item)
        return out

    def _judge_drift(self, drift: DriftWatch, seen: Shown) -> list[Emitted]:
        frame, boxes = seen.frame, seen.boxes
        wh = boxes.xyxy[:, 2:] - boxes.xyxy[:, :2]
        area_share = wh[:, 0] * wh[:, 1] / max(frame.width * frame.height, 1)
        changes = drift.observe(
            frame.time_s, frame.captured_at, boxes.confidence, boxes.class_id, area_share
        )
        if changes is None:
            return []
        self._stats.drift(frame.source_id, drift.gauges())
        return [self._factory.drift(frame, change) for change in changes]

    def _object_events(
        self, occurrences: list[Occurrence], timed: bool, shown: Shown | None = None
    ) -> list[Emitted]:
        """The events of `occurrences`; those of `shown`'s frame carry its picture when
        the pipeline takes snapshots (one picture per frame, stored once)."""
        out = []
        snapshots, snapshot = self._snapshots, None
        for o in occurrences:
            self._stats.object_event(o.type, o.zone or o.line, o.direction)
            if o.type not in self._emit:
                continue
            if shown is None or snapshots is None or not snapshots.wants(o.type):
                out.append(self._factory.occurrence(o, timed))
                continue
            attachment = None
            if snapshot is None:
                snapshot, attachment = snapshots.take(shown)
            out.append(self._factory.occurrence(o, timed, snapshot, attachment))
        return out
