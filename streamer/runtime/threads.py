"""Threads, stop signals and error transport shared by every stage of a pipeline.

A `Supervisor` owns two events: `stop_sources` (finish gracefully: sources end their
streams, everything already decoded drains through the pipeline) and `halt` (stop
now: every loop and blocking call gives up within `POLL_S`). A fatal error in any
thread is recorded as `failure`, halts the pipeline, and is raised to the pipeline's
caller by `Pipeline.join`, so it is never lost in a worker.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from streamer.errors import PipelineFailed
from streamer.runtime.messages import Control, EndOfStream
from streamer.runtime.queues import POLL_S, Outbox, Overflow, StageQueue, is_control

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


_PR_SET_NAME = 15  # prctl(2)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def name_os_thread() -> None:
    """Give the calling thread's name, less the "streamer." prefix, to its OS thread, so that
    `top -H`, `ps -L`, /proc and profilers tell the stages apart (Linux; the OS keeps 15
    bytes). Python only does this itself from 3.14."""
    if sys.platform == "linux":
        name = threading.current_thread().name.removeprefix("streamer.")
        _libc().prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


class Supervisor:
    def __init__(self) -> None:
        self.stop_sources = threading.Event()
        self.halt = threading.Event()
        self._lock = threading.Lock()
        self._failure: PipelineFailed | None = None
        self._threads: list[threading.Thread] = []

    def fail(self, where: str, exc: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = PipelineFailed(f"{where} failed: {exc}")
                self._failure.__cause__ = exc
        log.error("%s failed; stopping the pipeline", where, exc_info=exc)
        self.stop_sources.set()
        self.halt.set()

    @property
    def failure(self) -> PipelineFailed | None:
        """The first failure of a thread, if any, with its exception as the cause."""
        return self._failure

    def spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        """Start a named, non-daemon thread whose uncaught error fails the pipeline."""

        def guarded() -> None:
            try:
                name_os_thread()
                target()
            except BaseException as exc:  # noqa: BLE001 - any error must reach the main thread
                self.fail(name, exc)

        thread = threading.Thread(target=guarded, name=name, daemon=False)
        self._threads.append(thread)
        thread.start()
        return thread

    def owns_current_thread(self) -> bool:
        return threading.current_thread() in self._threads

    def alive(self) -> list[str]:
        return [t.name for t in self._threads if t.is_alive()]

    def join(self, timeout_s: float) -> bool:
        """Wait for every thread, all within one deadline; True when all have ended."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not self.alive()


class Stage(ABC, Generic[In, Out]):
    """One step of work between two queues. Knows nothing of threads.

    `process` handles one data item; `flush` hands over anything held back (a partial
    batch) and runs before each control item is forwarded, so control items stay in
    order with the data; `poll` runs when nothing arrived within `wait_s()` seconds.
    """

    name: str = "stage"

    @abstractmethod
    def process(self, item: In) -> Iterable[Out]: ...

    def flush(self) -> Iterable[Out]:
        return ()

    def poll(self) -> Iterable[Out]:
        return ()

    def wait_s(self) -> float:
        return POLL_S

    def control(self, item: Control) -> Iterable[Out | Control]:
        """What a control item becomes downstream: by default itself."""
        return (item,)

    def close(self, halted: bool) -> None:
        """The stage's thread is ending: release what the stage holds. After a halt or a
        failure (`halted`), count the items it held back (a partial batch) as dropped."""


def run_stage(
    stage: Stage[In, Out],
    inbox: StageQueue[In],
    outbox: Outbox[Out],
    source_ids: Iterable[str],
    supervisor: Supervisor,
) -> None:
    """The loop of one stage thread; returns once every source's end of stream passed."""
    remaining = set(source_ids)

    def forward(outputs: Iterable[Out | Control]) -> None:
        for out in outputs:
            if is_control(out):
                outbox.put_control(out)  # type: ignore[arg-type]
            else:
                outbox.put(out, supervisor.halt)  # type: ignore[arg-type]

    try:
        while remaining and not supervisor.halt.is_set():
            if outbox.overflow is not Overflow.BLOCK and not outbox.wait_for_room():
                # A leaky outbox is full: take nothing yet. The input waits in its own leaky
                # queue, where the freshest frame wins, and no work is spent on a frame that
                # would only be pushed out of the outbox again.
                continue
            item = inbox.get(stage.wait_s())
            if item is None:
                forward(stage.poll())
            elif is_control(item):
                forward(stage.flush())
                forward(stage.control(item))  # type: ignore[arg-type]
                if isinstance(item, EndOfStream):
                    remaining.discard(item.source_id)
            else:
                forward(stage.process(item))  # type: ignore[arg-type]
    finally:
        # Left before every source ended: halted, or the stage itself failed.
        stage.close(halted=bool(remaining) or supervisor.halt.is_set())
