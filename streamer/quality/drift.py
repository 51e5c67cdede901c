"""Whether the detector's output still looks like the source's reference profile.

Each window of a source's detections is reduced to four histograms (`Histograms`):
confidence, class mix, box size and detections per frame. A window is compared with the
reference by the Jensen-Shannon divergence (base 2, so 0 = the same, 1 = nothing in
common). Chosen over PSI because it is bounded and symmetric and needs no made-up floor
for empty bins (PSI divides by them: a class never seen in the reference makes it
infinite); over a two-sample test because with tens of thousands of correlated boxes any
test rejects, while the divergence measures how far apart, which is what a threshold
can be set on. A window is judged only when it holds enough frames and boxes: a quiet
night is not a drift, it is too little evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from streamer.events.event import AlertState, Drift, DriftFeature
from streamer.runtime.stats import Gauge

CONFIDENCE_BINS = np.linspace(0.0, 1.0, 21)
# Box size: log2 of the box's share of the frame, from 1/16384 (a few pixels) to all of it.
SIZE_BINS = np.arange(-14.0, 0.5, 1.0)
MAX_COUNT = 10  # detections per frame: 0..9, and 10 or more


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two histograms (counts), base 2: 0..1."""
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return max(0.0, (kl(p) + kl(q)) / 2)


@dataclass
class Histograms:
    """The detections of a window (or of the reference), counted."""

    classes: int
    confidence: np.ndarray = field(init=False)
    class_mix: np.ndarray = field(init=False)
    box_size: np.ndarray = field(init=False)
    per_frame: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.confidence = np.zeros(len(CONFIDENCE_BINS) - 1)
        self.class_mix = np.zeros(self.classes)
        self.box_size = np.zeros(len(SIZE_BINS) + 1)
        self.per_frame = np.zeros(MAX_COUNT + 1)

    @property
    def frames(self) -> int:
        return int(self.per_frame.sum())

    @property
    def boxes(self) -> int:
        return int(self.class_mix.sum())

    def add(self, confidence: np.ndarray, class_id: np.ndarray, area_share: np.ndarray) -> None:
        """One frame's boxes: their confidences, classes and shares of the frame."""
        self.per_frame[min(len(confidence), MAX_COUNT)] += 1
        if not len(confidence):
            return
        self.confidence += np.histogram(np.clip(confidence, 0, 1), CONFIDENCE_BINS)[0]
        self.class_mix += np.bincount(class_id, minlength=self.classes)[: self.classes]
        sizes = np.log2(np.clip(area_share, 2.0**-20, 1.0))
        self.box_size += np.bincount(np.digitize(sizes, SIZE_BINS), minlength=len(self.box_size))

    def __iadd__(self, other: Histograms) -> Histograms:
        for f in DriftFeature:
            self.of(f)[:] += other.of(f)
        return self

    def of(self, feature: DriftFeature) -> np.ndarray:
        return {
            DriftFeature.CONFIDENCE: self.confidence,
            DriftFeature.CLASS_MIX: self.class_mix,
            DriftFeature.BOX_SIZE: self.box_size,
            DriftFeature.DETECTIONS_PER_FRAME: self.per_frame,
        }[feature]

    def to_dict(self) -> dict[str, list[float]]:
        return {str(f): self.of(f).tolist() for f in DriftFeature}

    @classmethod
    def from_dict(cls, o: Mapping[str, list[float]]) -> Histograms:
        h = cls(len(o[DriftFeature.CLASS_MIX]))
        for f in DriftFeature:
            counts = np.asarray(o[f], dtype=np.float64)
            if counts.shape != h.of(f).shape or (counts < 0).any():
                raise ValueError(f"{f}: {len(counts)} counts, expected {len(h.of(f))}")
            h.of(f)[:] = counts
        return h


@dataclass(frozen=True)
class DriftRules:
    window_s: float
    thresholds: Mapping[DriftFeature, float]
    min_frames: int
    min_boxes: int
    clear_ratio: float = 0.8  # a raised feature clears below threshold x this


def scores(
    window: Histograms, reference: Histograms, rules: DriftRules
) -> dict[DriftFeature, float]:
    """The divergence of each feature, when the window and the reference both hold enough
    frames and boxes to judge (none otherwise: with too few boxes not even the count per
    frame is judged, since a quiet night is no drift)."""
    for h in (window, reference):
        if h.frames < rules.min_frames or h.boxes < rules.min_boxes:
            return {}
    return {f: js_divergence(window.of(f), reference.of(f)) for f in rules.thresholds}


class DriftWatch:
    """One source's drift: learns the reference over the first `baseline_s` seconds (or
    is given one), then judges each following window of `rules.window_s`. A baseline
    with too little evidence (a quiet start) goes on learning, a window at a time."""

    def __init__(
        self,
        source_id: str,
        classes: int,
        rules: DriftRules,
        baseline_s: float,
        reference: Histograms | None = None,
    ) -> None:
        self.source_id = source_id
        self._classes = classes
        self._rules = rules
        self.reference = reference
        self._span_s = baseline_s if reference is None else rules.window_s
        self._window = Histograms(classes)
        self._learnt = Histograms(classes)
        self._start: tuple[float, float] | None = None  # source time, wall clock
        self.raised: set[DriftFeature] = set()
        self.scores: dict[DriftFeature, float] = {}

    def gauges(self) -> dict[str, Gauge]:
        """Each judged feature's latest score, and whether it is raised."""
        return {str(f): Gauge(score, f in self.raised) for f, score in self.scores.items()}

    def learnt(self) -> Histograms | None:
        """The reference: loaded, learnt, or learnt from what was seen so far."""
        if self.reference is not None:
            return self.reference
        seen = Histograms(self._classes)
        seen += self._learnt
        seen += self._window
        return seen if seen.frames else None

    def observe(
        self,
        time_s: float,
        wall_s: float,
        confidence: np.ndarray,
        class_id: np.ndarray,
        area_share: np.ndarray,
    ) -> list[Drift] | None:
        """One frame's boxes; the changes of the window it closes (None: it closes none)."""
        if self._start is None:
            self._start = (time_s, wall_s)
        changes = None
        if time_s - self._start[0] >= self._span_s:
            changes = self._close(wall_s)
            self._start = (time_s, wall_s)
        self._window.add(confidence, class_id, area_share)
        return changes

    def _close(self, wall_s: float) -> list[Drift]:
        window, self._window = self._window, Histograms(self._classes)
        if self.reference is None:
            self._learnt += window
            self._span_s = self._rules.window_s
            if self._learnt.frames >= self._rules.min_frames and (
                self._learnt.boxes >= self._rules.min_boxes
            ):
                self.reference = self._learnt
            return []
        assert self._start is not None
        changes = []
        for feature, score in scores(window, self.reference, self._rules).items():
            self.scores[feature] = score
            threshold = self._rules.thresholds[feature]
            if feature not in self.raised and score > threshold:
                self.raised.add(feature)
                state = AlertState.RAISED
            elif feature in self.raised and score < threshold * self._rules.clear_ratio:
                self.raised.discard(feature)
                state, threshold = AlertState.CLEARED, threshold * self._rules.clear_ratio
            else:
                continue
            changes.append(
                Drift(feature, round(score, 4), round(threshold, 4), state,
                      round(self._start[1], 3), round(wall_s, 3))
            )  # fmt: skip
        return changes
