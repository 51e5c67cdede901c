"""Batch formation: size, wait, deadlines, input shapes and the order results leave in
(a stand-in model: pure logic only)."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import wait

import numpy as np
import pytest

from streamer.runtime.deadlines import WorkEstimate
from streamer.runtime.messages import Frame, Letterbox, Prepared
from streamer.runtime.stats import RunStats
from streamer.stages.inference import InferenceStage


class CountingModel:
    """Records the batch sizes it was called with; returns one row per frame."""

    array_device = None  # batches prepared on the CPU

    def __init__(self, sleep_s: float = 0.0, workers: int = 1) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.sleep_s = sleep_s
        self.workers = workers
        self.ran_on: set[str] = set()
        self.warmed_on: tuple[str, int] | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch.shape)
        self.ran_on.add(threading.current_thread().name)
        time.sleep(self.sleep_s)
        return np.zeros((len(batch), 1), np.float32)

    def warm_up(self, batch: int) -> int:
        self.warmed_on = (threading.current_thread().name, batch)
        return 1


def indices(results: object) -> list[int]:
    return [r.prepared.frame.index for r in results]  # type: ignore[attr-defined]


def handed_on(infer: InferenceStage, timeout_s: float = 5.0) -> list[int]:
    """The indices of the frames the stage hands on until its running batches are done,
    in the order it hands them on (the stage thread's loop, with nothing more arriving)."""
    got: list[int] = []
    deadline = time.monotonic() + timeout_s
    while infer._running and time.monotonic() < deadline:
        time.sleep(0.001)
        got += indices(infer.poll())
    return got


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
    # The batch runs on a worker thread: it may be done before `process` returns.
    assert indices(infer.process(prepared(1))) + handed_on(infer) == [0, 1]
    assert model.calls == [(2, 3, 4, 4)]


def test_a_partial_batch_runs_when_the_wait_is_over():
    model = CountingModel()
    infer, _ = stage(model, max_batch=4, max_wait_ms=30)
    infer.process(prepared(0))
    assert list(infer.poll()) == []  # too early
    assert 0 < infer.wait_s() <= 0.03
    time.sleep(0.035)
    # The batch runs on a worker thread: it may be done before `poll` returns.
    assert indices(infer.poll()) + handed_on(infer) == [0]


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
    infer.process(prepared(0))
    handed_on(infer)  # the call taught the estimate: about 20 ms per call
    soon = time.monotonic_ns() + 5_000_000  # 5 ms left: less than an inference takes
    assert list(infer.process(prepared(1, deadline_ns=soon))) == []
    assert stats.snapshot()["frames"]["dropped"] == {"infer:deadline": 1}
    assert len(model.calls) == 1


def test_a_frame_that_finishes_past_its_deadline_is_kept_and_marked_late():
    model = CountingModel(sleep_s=0.03)
    infer, stats = stage(model, max_batch=1)
    # no estimate yet, so the frame is let in; the call then takes 30 ms of its 10 ms
    infer.process(prepared(0, deadline_ns=time.monotonic_ns() + 10_000_000))
    (result,) = infer.flush()
    assert result.late
    assert stats.snapshot()["frames"]["dropped"] == {}


def test_frames_of_different_input_shapes_run_in_separate_calls():
    model = CountingModel()
    infer, _ = stage(model, max_batch=3)
    infer.process(prepared(0, hw=(4, 4)))
    infer.process(prepared(1, hw=(4, 8)))
    first = indices(infer.process(prepared(2, hw=(4, 4))))  # the second call waited for the first
    assert first + handed_on(infer) == [0, 2, 1]
    assert sorted(model.calls) == [(1, 3, 4, 8), (2, 3, 4, 4)]


class SlowFirstModel(CountingModel):
    """Two workers; the first call takes longer than the second."""

    def __init__(self) -> None:
        super().__init__(workers=2)
        self.first_started = threading.Event()
        self.overlapped = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        if not self.first_started.is_set():
            self.first_started.set()
            time.sleep(0.1)
        else:
            self.overlapped = True
        return super().run(batch)


def test_batches_run_on_two_workers_at_once_and_leave_in_the_order_they_were_formed():
    model = SlowFirstModel()
    infer, _ = stage(model, max_batch=2)
    infer.process(prepared(0))
    infer.process(prepared(1))  # batch [0, 1]: its call takes 100 ms
    model.first_started.wait(1)
    infer.process(prepared(2))
    infer.process(prepared(3))  # batch [2, 3] runs beside it and finishes first
    assert handed_on(infer) == [0, 1, 2, 3]
    assert model.overlapped


def test_a_third_batch_waits_for_a_free_worker():
    model = CountingModel(sleep_s=0.05, workers=2)
    infer, _ = stage(model, max_batch=1)
    started = time.monotonic()
    got = [i for n in range(3) for i in indices(infer.process(prepared(n)))]
    assert time.monotonic() - started >= 0.04  # the third call waited for one of two
    assert got + handed_on(infer) == [0, 1, 2]


def test_the_model_is_warmed_up_on_the_thread_its_batches_run_on():
    """A GPU provider sets up per calling thread too: the warm-up runs where batches will."""
    model = CountingModel()
    infer, _ = stage(model, max_batch=4)
    assert infer.warm_up() == 1
    infer.process(prepared(0))
    infer.flush()
    assert model.warmed_on is not None
    name, batch = model.warmed_on
    assert name.startswith("streamer.infer") and batch == 4
    assert model.ran_on == {name}


def test_a_halt_counts_the_frames_held_back_as_dropped():
    infer, stats = stage(CountingModel(sleep_s=0.05), max_batch=2)
    infer.process(prepared(0))
    infer.process(prepared(1))  # running
    infer.process(prepared(2))  # pending
    infer.close(halted=True)
    assert stats.snapshot()["frames"]["dropped"] == {"infer:shutdown": 3}


def test_a_failed_model_call_fails_the_stage():
    class Broken(CountingModel):
        def run(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("out of memory")

    infer, stats = stage(Broken(), max_batch=1)
    with pytest.raises(RuntimeError, match="out of memory"):
        infer.process(prepared(0))
        infer.flush()
    infer.close(halted=True)  # as the stage's thread does when it fails
    assert stats.snapshot()["frames"]["dropped"] == {"infer:shutdown": 1}


def test_frames_finished_or_pending_when_a_later_call_fails_are_all_accounted_for():
    """Two workers: the first batch has finished, the second has failed, a fifth frame
    comes: the stage fails, and the results it had not handed on yet are counted with
    the failed batch and the pending frame."""

    class FailsSecond(CountingModel):
        def __init__(self) -> None:
            super().__init__(workers=2)
            self.first_may_end = threading.Event()
            self.started = itertools.count()

        def run(self, batch: np.ndarray) -> np.ndarray:
            if next(self.started) == 1:
                raise RuntimeError("device lost")
            self.first_may_end.wait(5)
            return super().run(batch)

    model = FailsSecond()
    infer, stats = stage(model, max_batch=2)
    for n in range(4):  # two batches, on two workers; the first one waits
        assert list(infer.process(prepared(n))) == []
    model.first_may_end.set()
    wait([future for future, _ in infer._running])  # both done, nothing handed on yet
    with pytest.raises(RuntimeError, match="device lost"):
        infer.process(prepared(4))
    infer.close(halted=True)  # as the stage's thread does when it fails
    assert stats.snapshot()["frames"]["dropped"] == {"infer:shutdown": 5}
