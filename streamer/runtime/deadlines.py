"""Frame deadlines (DESIGN.md section 3): decide before spending compute on a frame."""

from __future__ import annotations

import threading
from collections import deque

from streamer.runtime.clock import SYSTEM_CLOCK, Clock

WINDOW = 16  # recent timings the reserve is taken from
MEMORY_S = 1.0  # and none older than this, or than MEMORY_CALLS of the newest call
MEMORY_CALLS = 4
# Inference time swings with what else the CPU runs (decoders, other processes): the
# reserve keeps a quarter on top of the slowest recent call.
HEADROOM = 1.25


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

    The inference workers record how long each model call took per frame of its batch,
    the postprocessing thread how long each frame took there, and how long a frame waited
    between its model call's end and its postprocessing (for that thread, busy with other
    frames, or for a batch formed before its own to finish: results leave in order). The
    reserve of a frame entering a batch of k frames is k times the slowest recent
    inference per frame, plus k times the slowest recent postprocessing, plus the longest
    recent wait: a frame is only let through when even a slow batch would still end
    before its deadline, so latency stays within the budget rather than around it. Per
    frame, because batches come in every size: one slow batch of four must not make a
    frame that will run alone look hopeless. Timings are forgotten after MEMORY_S, or
    after MEMORY_CALLS times the newest call for a slow model: if an overestimate made
    every frame look hopeless, no new timing would correct it, and every frame would be
    dropped until then. The warm-up's timing (`seed_inference`) counts from the first
    frame on, however long that frame takes to come (connecting to a camera takes
    seconds), and ages like any other from then.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # (when, took per frame) in ns
        self._inference: deque[tuple[int, int]] = deque(maxlen=WINDOW)
        self._postprocess: deque[tuple[int, int]] = deque(maxlen=WINDOW)
        self._waits: deque[tuple[int, int]] = deque(maxlen=WINDOW)
        self._last_call_ns = 0
        self._seed_ns = 0  # per frame, from the warm-up, until the first frame asks

    def reserve_ns(self, batch_size: int = 1) -> int:
        """What a frame entering a batch of `batch_size` frames still needs."""
        with self._lock:
            now = self._clock.monotonic_ns()
            if self._seed_ns:
                self._inference.append((now, self._seed_ns))
                self._seed_ns = 0
            memory_ns = max(int(MEMORY_S * 1e9), MEMORY_CALLS * self._last_call_ns)
            oldest = now - memory_ns
            infer = max((took for when, took in self._inference if when >= oldest), default=0)
            post = max((took for when, took in self._postprocess if when >= oldest), default=0)
            wait = max((took for when, took in self._waits if when >= oldest), default=0)
        return batch_size * (int(HEADROOM * infer) + post) + wait

    def seed_inference(self, elapsed_ns: int, frames: int) -> None:
        """The warm-up's call on `frames` frames took `elapsed_ns`: recorded as a timing
        when the first frame asks for its reserve."""
        with self._lock:
            self._seed_ns = elapsed_ns // max(1, frames)
            self._last_call_ns = elapsed_ns

    def record_inference(self, elapsed_ns: int, frames: int) -> None:
        """A model call on a batch of `frames` frames took `elapsed_ns`."""
        with self._lock:
            self._inference.append((self._clock.monotonic_ns(), elapsed_ns // max(1, frames)))
            self._last_call_ns = elapsed_ns

    def record_postprocess(self, elapsed_ns: int) -> None:
        with self._lock:
            self._postprocess.append((self._clock.monotonic_ns(), elapsed_ns))

    def record_wait(self, elapsed_ns: int) -> None:
        """A frame's model call ended `elapsed_ns` before its postprocessing began."""
        with self._lock:
            self._waits.append((self._clock.monotonic_ns(), max(0, elapsed_ns)))
