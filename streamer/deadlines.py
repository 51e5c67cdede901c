"""Frame deadlines (DESIGN.md section 3): decide before spending compute on a frame."""

from __future__ import annotations

import threading
from collections import deque

WINDOW = 16  # recent timings the reserve is taken from


def is_expired(deadline_ns: int | None, now_ns: int, reserve_ns: int = 0) -> bool:
    """True when work started at `now_ns` and taking `reserve_ns` would end past the deadline.

    >>> is_expired(None, 10**12)
    False
    >>> is_expired(1_000, 900, reserve_ns=200)
    True
    """
    return deadline_ns is not None and now_ns + reserve_ns > deadline_ns


class WorkEstimate:
    """How long the work left after batch formation takes: the reserve a frame needs.

    The inference thread records how long each model call takes, the postprocessing
    thread how long each frame takes there. The reserve is the slowest recent call plus,
    for a full batch, the slowest recent postprocessing of each of its frames: a frame
    is only let through when even a slow batch would still end before its deadline, so
    latency stays within the budget rather than around it.
    """

    def __init__(self, max_batch: int) -> None:
        self._lock = threading.Lock()
        self._max_batch = max_batch
        self._inference_ns: deque[int] = deque(maxlen=WINDOW)
        self._postprocess_ns: deque[int] = deque(maxlen=WINDOW)
        self._reserve_ns = 0

    @property
    def reserve_ns(self) -> int:
        return self._reserve_ns

    def record_inference(self, elapsed_ns: int) -> None:
        with self._lock:
            self._inference_ns.append(elapsed_ns)
            self._update()

    def record_postprocess(self, elapsed_ns: int) -> None:
        with self._lock:
            self._postprocess_ns.append(elapsed_ns)
            self._update()

    def _update(self) -> None:
        slowest_post = max(self._postprocess_ns, default=0)
        self._reserve_ns = max(self._inference_ns, default=0) + self._max_batch * slowest_post
