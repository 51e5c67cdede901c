"""The inference stage: batches frames across sources and runs the model on them.

One thread forms the batches. A batch closes when it has `max_batch` frames, when
`max_wait` has passed since its first frame, or when waiting longer would make its most
urgent frame miss its deadline, whichever comes first. Just before the model runs,
frames that can no longer finish in time are dropped; after it has run, no frame is
dropped again (the compute is spent), frames past their deadline are only marked late.

Still frames (nothing moved: the motion gate spares them the model) take no place in
a batch: they only keep theirs among their source's frames, leaving with the batch of
the frame before them.

Closed batches run on the model's workers, up to `model.workers` at once (each has its
own session). Results leave in the order the batches were formed, so each
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
from streamer.runtime.messages import (
    DropReason,
    Inferred,
    OnDevice,
    Prepared,
    Still,
    source_of,
)
from streamer.runtime.queues import POLL_S
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Stage, name_os_thread

log = logging.getLogger(__name__)

Item = Prepared | Still
Result = Inferred | Still


class InferenceStage(Stage[Item, Result]):
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
        self._pending: list[Item] = []
        self._first_ns = 0
        self._workers = ThreadPoolExecutor(
            model.workers, thread_name_prefix="streamer.infer", initializer=name_os_thread
        )
        self._running: deque[tuple[Future[list[Result]], list[Item]]] = deque()
        self._ready: list[Result] = []  # results not handed on yet

    def warm_up(self) -> int:
        """`Model.warm_up` at the largest batch, run on this stage's worker threads, where
        the batches will run: ONNX Runtime's CUDA provider also sets up per calling thread
        (its cuBLAS and cuDNN handles are made at a thread's first call), which the
        first batch of a stream would otherwise wait for."""
        return self._workers.submit(self._model.warm_up, self._max_batch).result()

    def _pending_work(self) -> list[Prepared]:
        return [p for p in self._pending if isinstance(p, Prepared)]

    def _due_ns(self) -> int:
        """When the pending batch must run at the latest."""
        due = self._first_ns + self._max_wait_ns
        work = self._pending_work()
        deadlines = [p.frame.deadline_ns for p in work if p.frame.deadline_ns is not None]
        if deadlines:
            due = min(due, min(deadlines) - self._estimate.reserve_ns(len(work)))
        return due

    def process(self, item: Item) -> Iterable[Result]:
        if isinstance(item, Still):
            return self._pass_still(item)
        now = self._clock.monotonic_ns()
        pending = len(self._pending_work())
        if is_expired(item.frame.deadline_ns, now, self._estimate.reserve_ns(pending + 1)):
            self._stats.frame_dropped(self.name, DropReason.DEADLINE.value, item.frame.source_id)
            return self._hand_on()
        if not self._pending:
            self._first_ns = now
        self._pending.append(item)
        if pending + 1 >= self._max_batch or now >= self._due_ns():
            self._run()
        return self._hand_on()

    def _pass_still(self, item: Still) -> Iterable[Result]:
        """A still frame waits in a pending batch, leaving with it; with none pending, it
        leaves after the batches running (its source's earlier frames may be in them)."""
        if self._pending:
            self._pending.append(item)
        else:
            self._running.append((_finished([item]), [item]))
        return self._hand_on()

    def wait_s(self) -> float:
        if not self._pending:
            return POLL_S
        return max(0.0, (self._due_ns() - self._clock.monotonic_ns()) / 1e9)

    def poll(self) -> Iterable[Result]:
        if self._pending and self._clock.monotonic_ns() >= self._due_ns():
            self._run()
        return self._hand_on()

    def flush(self) -> Iterable[Result]:
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
                *self._ready,
            ]
            for p in held:
                self._stats.frame_dropped(self.name, DropReason.SHUTDOWN.value, source_of(p))
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
        for group in shape_groups(self._pending):
            if any(isinstance(p, Prepared) for p in group):
                self._wait_for_a_worker()
            taken = {id(p) for p in group}
            self._pending = [p for p in self._pending if id(p) not in taken]
            batch = self._still_in_time(group)
            if not any(isinstance(p, Prepared) for p in batch):
                if batch:  # still frames only: no model call
                    self._running.append((_finished(batch), batch))
                continue
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

    def _hand_on(self) -> list[Result]:
        """What finished, in the order the batches were formed."""
        self._collect()
        ready, self._ready = self._ready, []
        return ready

    def _infer(self, batch: list[Item]) -> list[Result]:
        """Runs on a worker thread."""
        work = [p for p in batch if isinstance(p, Prepared)]
        started = self._clock.monotonic_ns()
        if self._model.array_device is None:
            outputs = self._model.run(stacked(work))
        else:
            outputs = self._model.run_prepared(
                [p.tensor.planes if isinstance(p.tensor, OnDevice) else p.tensor for p in work],
                [p.letterbox for p in work],
                input_hw=(work[0].tensor.shape[1], work[0].tensor.shape[2]),
            )
        finished = self._clock.monotonic_ns()
        self._estimate.record_inference(finished - started, len(work))
        inferred = {}
        for item, output in zip(work, outputs, strict=True):
            deadline = item.frame.deadline_ns
            late = deadline is not None and finished > deadline
            inferred[id(item)] = Inferred(item, output, late=late, finished_ns=finished)
        return [item if isinstance(item, Still) else inferred[id(item)] for item in batch]

    def _still_in_time(self, group: list[Item]) -> list[Item]:
        """The frames that can still finish before their deadline; the others are dropped.
        Still frames cost nothing to finish: they are kept."""
        now = self._clock.monotonic_ns()
        reserve = self._estimate.reserve_ns(sum(isinstance(p, Prepared) for p in group))
        kept: list[Item] = []
        for item in group:
            if isinstance(item, Prepared) and is_expired(item.frame.deadline_ns, now, reserve):
                self._stats.frame_dropped(
                    self.name, DropReason.DEADLINE.value, item.frame.source_id
                )
            else:
                kept.append(item)
        return kept


def shape_groups(items: list[Item]) -> list[list[Item]]:
    """The pending frames as one batch per input shape, in the order of each shape's first
    frame. A still frame goes with the batch of its source's frame before it (with the
    first batch when there is none), so that each source's frames stay in order."""
    groups: dict[tuple[int, ...], list[Item]] = {}
    shape_of_source: dict[str, tuple[int, ...]] = {}
    for item in items:
        if isinstance(item, Prepared):
            shape = shape_of_source[item.frame.source_id] = item.tensor.shape
        else:
            shape = shape_of_source.get(item.frame.source_id, next(iter(groups), ()))
        groups.setdefault(shape, []).append(item)
    return list(groups.values())


def _finished(batch: list[Item]) -> Future[list[Result]]:
    """The outcome of a batch with no model call: its still frames, as they are."""
    future: Future[list[Result]] = Future()
    future.set_result([p for p in batch if isinstance(p, Still)])
    return future


def stacked(batch: list[Prepared]) -> np.ndarray:
    """The batch's tensors (prepared on the CPU) as one `[B, 3, H, W]` array; a batch of
    one is a view, no copy."""
    tensors = [p.tensor for p in batch if isinstance(p.tensor, np.ndarray)]
    if len(tensors) != len(batch):
        raise TypeError("frames left on the GPU are prepared by Model.run_prepared")
    if len(tensors) == 1:
        return tensors[0][None]
    return np.stack(tensors)
