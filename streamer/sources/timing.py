"""Source timing, pure of I/O: pacing a file like a camera, keeping a frame rate, and the
waits between reconnections. Each reads time only through what it is given."""

from __future__ import annotations

import random

from streamer.config.schema import ReconnectConfig
from streamer.runtime.clock import Clock

MAX_PTS_STEP_S = 10.0  # a larger jump in timestamps is a discontinuity, not a pause


class RateLimiter:
    """Keeps at most `max_fps` frames a second, evenly spaced, judged by frame time.

    A frame is kept once its time reaches the next slot; slots advance by whole
    intervals, so 30 fps limited to 12 keeps 12 frames a second on average. After a gap
    longer than one interval, or a jump back in time, the slots restart from that frame.
    """

    def __init__(self, max_fps: float) -> None:
        self._interval_s = 1.0 / max_fps
        # Timestamps are rounded to their time base (often milliseconds).
        self._tolerance_s = min(self._interval_s * 0.1, 0.005)
        self._next_s: float | None = None

    def keep(self, t_s: float) -> bool:
        if self._next_s is None or abs(t_s - self._next_s) > self._interval_s:
            self._next_s = t_s  # the first frame, or a jump in time either way
        if t_s < self._next_s - self._tolerance_s:
            return False
        self._next_s += self._interval_s
        return True


class Backoff:
    """Waits between reconnection attempts: doubling from the initial delay up to the
    maximum, each randomised by +-jitter so that cameras that failed together do not all
    retry together."""

    def __init__(self, config: ReconnectConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng or random.Random()
        self._next_s = config.initial_delay_s

    def next_delay_s(self) -> float:
        base = self._next_s
        self._next_s = min(base * 2, self._config.max_delay_s)
        jitter = self._config.jitter
        return base * self._rng.uniform(1 - jitter, 1 + jitter)

    def reset(self) -> None:
        self._next_s = self._config.initial_delay_s


class Pacer:
    """Turns presentation times into paced monotonic stamps, robust to bad timestamps."""

    def __init__(self, fallback_step_s: float, clock: Clock) -> None:
        self._fallback_step_s = fallback_step_s
        self._clock = clock
        self._start_ns: int | None = None
        self._media_s = 0.0
        self._last_pts_s: float | None = None

    def stamp_ns(self, pts_s: float | None) -> int:
        """When the frame with `pts_s` is due; timestamps that go backwards or jump
        advance the clock by one frame instead."""
        if self._start_ns is None:
            self._start_ns = self._clock.monotonic_ns()
        elif pts_s is None or self._last_pts_s is None:
            self._media_s += self._fallback_step_s
        else:
            step = pts_s - self._last_pts_s
            self._media_s += step if 0 < step <= MAX_PTS_STEP_S else self._fallback_step_s
        if pts_s is not None:
            self._last_pts_s = pts_s
        return self._start_ns + int(self._media_s * 1e9)
