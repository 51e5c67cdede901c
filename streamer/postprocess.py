"""The postprocessing stage: raw model output -> boxes in source pixels -> events."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from streamer.boxes import nms, unletterbox
from streamer.deadlines import WorkEstimate
from streamer.events import EventFactory
from streamer.messages import Control, Detections, Event, Inferred, SourceStatus
from streamer.models import Model
from streamer.runtime import Stage
from streamer.stats import RunStats


@dataclass(frozen=True)
class DetectionRules:
    confidence: float
    iou: float
    max_detections: int
    class_ids: frozenset[int] | None  # None: every class


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


class PostprocessStage(Stage[Inferred, Event]):
    name = "postprocess"

    def __init__(
        self,
        model: Model,
        rules: DetectionRules,
        factory: EventFactory,
        emit: frozenset[str],
        estimate: WorkEstimate,
        stats: RunStats,
    ) -> None:
        self._model = model
        self._rules = rules
        self._factory = factory
        self._emit = emit
        self._estimate = estimate
        self._stats = stats

    def process(self, item: Inferred) -> Iterable[Event]:
        started = time.monotonic_ns()
        detections = detections_from_output(self._model, item, self._rules)
        frame = item.prepared.frame
        events = []
        if "detections" in self._emit:
            events.append(self._factory.detections(frame, detections))
        self._stats.events_emitted(len(events))
        self._estimate.record_postprocess(time.monotonic_ns() - started)
        # A frame's latency ends with its events reaching Redis, or here if it has none.
        no_event_latency = None if events else (time.monotonic_ns() - frame.captured_ns) / 1e6
        self._stats.frame_processed(no_event_latency, late=item.late)
        return events

    def control(self, item: Control) -> Iterable[Event | Control]:
        if isinstance(item, SourceStatus):
            self._stats.events_emitted(1)
            return (self._factory.source_status(item),)
        return (item,)
