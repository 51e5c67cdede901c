"""Batch formation: size, wait, deadlines and input shapes (a stand-in model: pure logic only)."""

from __future__ import annotations

import time

import numpy as np

from streamer.batching import InferenceStage
from streamer.deadlines import WorkEstimate
from streamer.messages import Frame, Letterbox, Prepared
from streamer.stats import RunStats


class CountingModel:
    """Records the batch sizes it was called with; returns one row per frame."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.sleep_s = sleep_s

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch.shape)
        time.sleep(self.sleep_s)
        return np.zeros((len(batch), 1), np.float32)


def prepared(index: int, deadline_ns: int | None = None, hw: tuple[int, int] = (4, 4)) -> Prepared:
    image = np.zeros((8, 8, 3), np.uint8)
    now = time.monotonic_ns()
    frame = Frame("cam", index, None, now, time.time(), deadline_ns, image, now / 1e9)
    return Prepared(frame, np.zeros((3, *hw), np.float32), Letterbox(1, 1, 0, 0))


def stage(model: CountingModel, max_batch: int = 2, max_wait_ms: float = 50.0):
    stats = RunStats(["cam"])
    return InferenceStage(model, max_batch, max_wait_ms, WorkEstimate(), stats), stats  # type: ignore[arg-type]


def test_a_batch_runs_as_soon_as_it_is_full():
    model = CountingModel()
    infer, _ = stage(model, max_batch=2)
    assert list(infer.process(prepared(0))) == []
    out = list(infer.process(prepared(1)))
    assert [r.prepared.frame.index for r in out] == [0, 1]
    assert model.calls == [(2, 3, 4, 4)]


def test_a_partial_batch_runs_when_the_wait_is_over():
    model = CountingModel()
    infer, _ = stage(model, max_batch=4, max_wait_ms=30)
    infer.process(prepared(0))
    assert list(infer.poll()) == []  # too early
    assert 0 < infer.wait_s() <= 0.03
    time.sleep(0.035)
    assert [r.prepared.frame.index for r in infer.poll()] == [0]


def test_the_wait_never_passes_the_earliest_deadline():
    infer, _ = stage(CountingModel(), max_batch=4, max_wait_ms=1000)
    infer.process(prepared(0, deadline_ns=time.monotonic_ns() + 20_000_000))
    assert infer.wait_s() <= 0.02


def test_flush_hands_over_the_partial_batch():
    infer, _ = stage(CountingModel(), max_batch=4)
    infer.process(prepared(0))
    assert [r.prepared.frame.index for r in infer.flush()] == [0]
    assert list(infer.flush()) == []


def test_a_frame_that_cannot_make_its_deadline_is_dropped_before_inference():
    model = CountingModel(sleep_s=0.02)
    infer, stats = stage(model, max_batch=1)
    list(infer.process(prepared(0)))  # teaches the estimate: about 20 ms per call
    soon = time.monotonic_ns() + 5_000_000  # 5 ms left: less than an inference takes
    assert list(infer.process(prepared(1, deadline_ns=soon))) == []
    assert stats.snapshot()["frames"]["dropped"] == {"infer:deadline": 1}
    assert len(model.calls) == 1


def test_a_frame_that_finishes_past_its_deadline_is_kept_and_marked_late():
    model = CountingModel(sleep_s=0.03)
    infer, stats = stage(model, max_batch=1)
    # no estimate yet, so the frame is let in; the call then takes 30 ms of its 10 ms
    (result,) = infer.process(prepared(0, deadline_ns=time.monotonic_ns() + 10_000_000))
    assert result.late
    assert stats.snapshot()["frames"]["dropped"] == {}


def test_frames_of_different_input_shapes_run_in_separate_calls():
    model = CountingModel()
    infer, _ = stage(model, max_batch=3)
    infer.process(prepared(0, hw=(4, 4)))
    infer.process(prepared(1, hw=(4, 8)))
    out = list(infer.process(prepared(2, hw=(4, 4))))
    assert sorted(model.calls) == [(1, 3, 4, 8), (2, 3, 4, 4)]
    assert sorted(r.prepared.frame.index for r in out) == [0, 1, 2]
