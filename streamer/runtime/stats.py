"""What a run did: frame, drop and event counters and glass-to-event latency.

One `RunStats` is shared by every thread of a pipeline; each method takes its lock
for a few counter updates only. `snapshot()` gives the `--stats-json` document of
DESIGN.md section 8.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

from streamer.runtime.clock import SYSTEM_CLOCK, Clock

_BUCKET_GROWTH = 1.01  # latency buckets 1 % wide: percentiles within 1 %
_LOG_GROWTH = math.log(_BUCKET_GROWTH)
_MIN_MS = 0.01


class LatencyHistogram:
    """Percentiles of millisecond values in constant memory (log-spaced buckets)."""

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        self._buckets[int(math.log(max(ms, _MIN_MS) / _MIN_MS) / _LOG_GROWTH)] += 1
        self.count += 1
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, q: float) -> float:
        """The value below which a fraction `q` (0..1) of the values fall."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                upper = _MIN_MS * _BUCKET_GROWTH ** (bucket + 1)
                return min(upper, self.max_ms)
        return self.max_ms


class RunStats:
    def __init__(self, source_ids: list[str], clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started_ns = clock.monotonic_ns()
        self._decoded: Counter[str] = Counter()
        self._processed = 0
        self._late = 0
        self._dropped: Counter[str] = Counter()
        self._emitted = 0
        self._delivered = 0
        self._lost = 0
        self._reconnects: Counter[str] = Counter()
        self._latency = LatencyHistogram()
        self._objects: Counter[str] = Counter()  # appeared, left
        self._active: dict[str, int] = {}  # source -> confirmed objects now in view
        self._zones: dict[str, Counter[str]] = {}  # zone -> entered, exited
        self._lines: dict[str, Counter[str]] = {}  # line -> in, out
        self._source_ids = list(source_ids)
        self.providers: list[str] = []

    def start_clock(self) -> None:
        """Start the run's clock (frames per second, duration) again, once all is ready:
        loading and warming up the model is not running time."""
        with self._lock:
            self._started_ns = self._clock.monotonic_ns()

    def frame_decoded(self, source_id: str) -> None:
        with self._lock:
            self._decoded[source_id] += 1

    def frame_dropped(self, stage: str, reason: str) -> None:
        with self._lock:
            self._dropped[f"{stage}:{reason}"] += 1

    def frame_processed(self, latency_ms: float | None, late: bool = False) -> None:
        """A frame left postprocessing; with a latency when it caused no event. `late`:
        its inference ended past its deadline."""
        with self._lock:
            self._processed += 1
            self._late += late
            if latency_ms is not None:
                self._latency.add(latency_ms)

    def events_emitted(self, n: int) -> None:
        with self._lock:
            self._emitted += n

    def events_delivered(self, latencies_ms: list[float | None]) -> None:
        """Events Redis accepted, with the latency of each one caused by a frame."""
        with self._lock:
            self._delivered += len(latencies_ms)
            for ms in latencies_ms:
                if ms is not None:
                    self._latency.add(ms)

    def events_lost(self, n: int) -> None:
        with self._lock:
            self._lost += n

    def count_regions(self, zones: list[str], lines: list[str]) -> None:
        """Zones and lines to report, at zero until something happens in them."""
        with self._lock:
            for name in zones:
                self._zones.setdefault(name, Counter())
            for name in lines:
                self._lines.setdefault(name, Counter())

    def object_event(self, type_: str, region: str | None, direction: str | None) -> None:
        """Count an object, zone or line occurrence (emitted or not)."""
        with self._lock:
            if type_ in ("object_appeared", "object_left"):
                self._objects[type_.removeprefix("object_")] += 1
            elif type_ in ("zone_entered", "zone_exited") and region is not None:
                self._zones.setdefault(region, Counter())[type_.removeprefix("zone_")] += 1
            elif type_ == "line_crossed" and region is not None and direction is not None:
                self._lines.setdefault(region, Counter())[direction] += 1

    def objects_active(self, source_id: str, n: int) -> None:
        with self._lock:
            self._active[source_id] = n

    def source_reconnected(self, source_id: str) -> None:
        with self._lock:
            self._reconnects[source_id] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            wall_s = (self._clock.monotonic_ns() - self._started_ns) / 1e9
            return {
                "frames": {
                    "decoded": sum(self._decoded.values()),
                    "processed": self._processed,
                    "late": self._late,
                    "dropped": dict(sorted(self._dropped.items())),
                },
                "events": {
                    "emitted": self._emitted,
                    "delivered": self._delivered,
                    "lost": self._lost,
                },
                "latency_ms": {
                    "p50": round(self._latency.percentile(0.50), 2),
                    "p95": round(self._latency.percentile(0.95), 2),
                    "p99": round(self._latency.percentile(0.99), 2),
                    "max": round(self._latency.max_ms, 2),
                },
                "fps": round(self._processed / wall_s, 2) if wall_s > 0 else 0.0,
                "wall_s": round(wall_s, 3),
                "sources": {
                    sid: {"reconnects": self._reconnects[sid], "frames": self._decoded[sid]}
                    for sid in self._source_ids
                },
                "providers": list(self.providers),
                "objects": {
                    "appeared": self._objects["appeared"],
                    "left": self._objects["left"],
                    "active": sum(self._active.values()),
                },
                "zones": {
                    name: {
                        "entered": c["entered"],
                        "exited": c["exited"],
                        "inside": c["entered"] - c["exited"],
                    }
                    for name, c in sorted(self._zones.items())
                },
                "lines": {
                    name: {"in": c["in"], "out": c["out"]}
                    for name, c in sorted(self._lines.items())
                },
            }
