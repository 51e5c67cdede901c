"""Frame deadlines (DESIGN.md section 3): decide before spending compute on a frame."""

from __future__ import annotations

import threading

EMA_WEIGHT = 0.2  # weight of the newest inference time in the running estimate


def is_expired(deadline_ns: int | None, now_ns: int, reserve_ns: int = 0) -> bool:
    """True when work started at `now_ns` and taking `reserve_ns` would end past the deadline.

    >>> is_expired(None, 10**12)
    False
    >>> is_expired(1_000, 900, reserve_ns=200)
    True
    """
    return deadline_ns is not None and now_ns + reserve_ns > deadline_ns


class InferenceEstimate:
    """A running estimate of how long one inference call takes (exponential average).

    Written by the inference thread, read by the stages before it to judge whether a
    frame can still make its deadline.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expected_ns = 0

    @property
    def expected_ns(self) -> int:
        return self._expected_ns

    def record(self, elapsed_ns: int) -> None:
        with self._lock:
            if self._expected_ns == 0:
                self._expected_ns = elapsed_ns
            else:
                self._expected_ns = int(
                    EMA_WEIGHT * elapsed_ns + (1 - EMA_WEIGHT) * self._expected_ns
                )
