"""The inference stage: batches frames across sources and runs the model on them.

One thread forms the batches. A batch closes when it has `max_batch` frames, when
`max_wait` has passed since its first frame, or when waiting longer would make its most
urgent frame miss its deadline, whichever comes first. Just before the model runs,
frames that can no longer finish in time are dropped; after it has run, no frame is
dropped again (the compute is spent), frames past their deadline are only marked late.

Closed batches run on the model's workers, up to `model.workers` at once (each has its
own ONNX Runtime session). Results leave in the order the batches were formed, so each
source's frames reach the tracker in order whichever batch finishes first.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np

from streamer.models import Model
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.deadlines import WorkEstimate, is_expired
from streamer.runtime.messages import DropReason, Inferred, Prepared
from streamer.runtime.queues import POLL_S
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Stage, name_os_thread

log = logging.getLogger(__name__)


class InferenceStage(Stage[Prepared, Inferred]):
    name = "infer"

    def __init__(
        self,
        model: Model,
        max_batch: int,
        max_wait_ms: float,
        estimate: WorkEstimate,
        stats: RunStats,
        wake: Callable[[], None] = lambda: None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`wake` interrupts the stage thread's wait for input (its inbox's `wake`) so a
        finished batch is handed on at once, not when the next frame arrives."""
        self._model = model
        self._clock = clock
        self._max_batch = max_batch
        self._max_wait_ns = int(max_wait_ms * 1e6)
        self._estimate = estimate
        self._stats = stats
        self._wake = wake
        self._pending: list[Prepared] = []
        self._first_ns = 0
        self._workers = ThreadPoolExecutor(
            model.workers, thread_name_prefix="streamer.infer", initializer=name_os_thread
        )
        self._running: deque[tuple[Future[list[Inferred]], list[Prepared]]] = deque()
        self._ready: list[Inferred] = []  # results not handed on yet

    def warm_up(self) -> int:
        """`Model.warm_up` at the largest batch, run on this stage's worker threads, where
        the batches will run: ONNX Runtime's CUDA provider also sets up per calling thread
        (its cuBLAS and cuDNN handles are made at a thread's first call), which the
        first batch of a stream would otherwise wait for."""
        return self._workers.submit(self._model.warm_up, self._max_batch).result()

    def _due_ns(self) -> int:
        """When the pending batch must run at the latest."""
        due = self._first_ns + self._max_wait_ns
        deadlines = [p.frame.deadline_ns for p in self._pending if p.frame.deadline_ns is not None]
        if deadlines:
            due = min(due, min(deadlines) - self._estimate.reserve_ns(len(self._pending)))
        return due

    def process(self, item: Prepared) -> Iterable[Inferred]:
        now = self._clock.monotonic_ns()
        if is_expired(
            item.frame.deadline_ns, now, self._estimate.reserve_ns(len(self._pending) + 1)
        ):
            self._stats.frame_dropped(self.name, DropReason.DEADLINE.value, item.frame.source_id)
            return self._hand_on()
        if not self._pending:
            self._first_ns = now
        self._pending.append(item)
        if len(self._pending) >= self._max_batch or now >= self._due_ns():
            self._run()
        return self._hand_on()

    def wait_s(self) -> float:
        if not self._pending:
            return POLL_S
        return max(0.0, (self._due_ns() - self._clock.monotonic_ns()) / 1e9)

    def poll(self) -> Iterable[Inferred]:
        if self._pending and self._clock.monotonic_ns() >= self._due_ns():
            self._run()
        return self._hand_on()

    def flush(self) -> Iterable[Inferred]:
        self._run()
        wait([future for future, _ in self._running])
        return self._hand_on()

    def close(self, halted: bool) -> None:
        if halted:
            for future, _ in self._running:
                if not future.cancel() and future.done() and future.exception() is not None:
                    log.error("a model call failed during the stop: %s", future.exception())
            held = [
                *self._pending,
                *(p for _, batch in self._running for p in batch),
                *(r.prepared for r in self._ready),
            ]
            for p in held:
                self._stats.frame_dropped(self.name, DropReason.SHUTDOWN.value, p.frame.source_id)
        self._pending = []
        self._running.clear()
        self._ready = []
        # Waits for a batch still running (a model call cannot be interrupted), so that
        # every thread of the pipeline has ended once its stage threads have.
        self._workers.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        """Hand the pending frames to the workers, one call per input shape (frames of
        different sizes get different shapes). A frame leaves `_pending` only when its
        batch is handed over: a failure meanwhile leaves it there, to be counted."""
        while self._pending:
            shape = self._pending[0].tensor.shape
            self._wait_for_a_worker()
            group = [p for p in self._pending if p.tensor.shape == shape]
            self._pending = [p for p in self._pending if p.tensor.shape != shape]
            batch = self._still_in_time(group)
            if batch:
                future = self._workers.submit(self._infer, batch)
                future.add_done_callback(lambda _: self._wake())
                self._running.append((future, batch))

    def _wait_for_a_worker(self) -> None:
        """Block while every worker is busy (the queue before this stage fills meanwhile:
        backpressure, or drops on a live source)."""
        busy = [future for future, _ in self._running if not future.done()]
        if len(busy) >= self._model.workers:
            wait(busy, return_when=FIRST_COMPLETED)
        self._collect()

    def _collect(self) -> None:
        """Move the results of the oldest batches that are done to `_ready`, in order,
        stopping at one still running. A failed model call fails the stage here; its
        batch stays in `_running`, to be counted."""
        while self._running and self._running[0][0].done():
            self._ready += self._running[0][0].result()
            self._running.popleft()

    def _hand_on(self) -> list[Inferred]:
        """What finished, in the order the batches were formed."""
        self._collect()
        ready, self._ready = self._ready, []
        return ready

    def _infer(self, batch: list[Prepared]) -> list[Inferred]:
        """Runs on a worker thread."""
        started = self._clock.monotonic_ns()
        outputs = self._model.run(stacked(batch))
        finished = self._clock.monotonic_ns()
        self._estimate.record_inference(finished - started, len(batch))
        results = []
        for item, output in zip(batch, outputs, strict=True):
            deadline = item.frame.deadline_ns
            late = deadline is not None and finished > deadline
            results.append(Inferred(item, output, late=late))
        return results

    def _still_in_time(self, group: list[Prepared]) -> list[Prepared]:
        """The frames that can still finish before their deadline; the others are dropped."""
        now = self._clock.monotonic_ns()
        reserve = self._estimate.reserve_ns(len(group))
        kept = []
        for item in group:
            if is_expired(item.frame.deadline_ns, now, reserve):
                self._stats.frame_dropped(
                    self.name, DropReason.DEADLINE.value, item.frame.source_id
                )
            else:
                kept.append(item)
        return kept


def stacked(batch: list[Prepared]) -> np.ndarray:
    """The batch's tensors as one `[B, 3, H, W]` array; a batch of one is a view, no copy."""
    if len(batch) == 1:
        return batch[0].tensor[None]
    return np.stack([p.tensor for p in batch])
