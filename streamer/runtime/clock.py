"""Time as a parameter: what the pipeline's timing logic reads instead of the `time` module.

Every part whose behaviour depends on time (frame deadlines, pacing a file like a camera,
reconnection backoff, the sink's retries, the run's statistics, event timestamps) takes
a `Clock`. A running pipeline uses `SYSTEM_CLOCK`; unit tests hand those parts a
`FakeClock` and move it on by hand, so they test timing without sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic_ns(self) -> int:
        """Nanoseconds on a clock that never goes back: for durations and deadlines."""

    def time(self) -> float:
        """Seconds since the epoch: for the times events report."""

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        """Sleep `timeout_s`, or less if `stop` is set meanwhile; whether `stop` is set."""


class SystemClock:
    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time(self) -> float:
        return time.time()

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        return stop.wait(max(0.0, timeout_s))


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told to (`advance`) or when something waits on it, at
    once: a wait of 5 s returns immediately, 5 s later on this clock.

    >>> clock = FakeClock()
    >>> clock.advance(1.5)
    >>> clock.monotonic_ns(), clock.time()
    (1500000000, 1700000001.5)
    >>> clock.wait(threading.Event(), 2.0), clock.monotonic_ns()
    (False, 3500000000)
    """

    def __init__(self, epoch_s: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._ns = 0
        self._epoch_s = epoch_s

    def monotonic_ns(self) -> int:
        with self._lock:
            return self._ns

    def time(self) -> float:
        with self._lock:
            return self._epoch_s + self._ns / 1e9

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._ns += round(seconds * 1e9)

    def wait(self, stop: threading.Event, timeout_s: float) -> bool:
        if not stop.is_set():
            self.advance(max(0.0, timeout_s))
        return stop.is_set()
