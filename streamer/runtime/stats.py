"""What a run did: frame, drop and event counters and glass-to-event latency.

One `RunStats` is shared by every thread of a pipeline; each method takes its lock
for a few counter updates only. `snapshot()` gives the `--stats-json` document of
DESIGN.md section 8. `totals()` gives the same counts as a `Totals` value that adds up
with another's: a pipeline sharded over processes sums its shards' totals.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streamer.events.event import SourceProblem, SourceState
from streamer.runtime.clock import SYSTEM_CLOCK, Clock

_BUCKET_GROWTH = 1.01  # latency buckets 1 % wide: percentiles within 1 %
_LOG_GROWTH = math.log(_BUCKET_GROWTH)
_MIN_MS = 0.01
RATE_WINDOW_S = 5.0  # a source's current frame rate: frames decoded over the last 5 s
STARTING = "starting"  # the state of a source that has not said anything yet


class LatencyHistogram:
    """Percentiles of millisecond values in constant memory (log-spaced buckets)."""

    def __init__(self, buckets: Mapping[int, int] | None = None, max_ms: float = 0.0) -> None:
        self._buckets: Counter[int] = Counter(buckets or {})
        self.count = sum(self._buckets.values())
        self.max_ms = max_ms

    @property
    def buckets(self) -> dict[int, int]:
        return dict(self._buckets)

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


class RateMeter:
    """Events per second over the last `window_s` seconds (of the times it is given)."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_ns = int(window_s * 1e9)
        self._times: deque[int] = deque()
        self._first_ns: int | None = None

    def add(self, now_ns: int) -> None:
        if self._first_ns is None:
            self._first_ns = now_ns
        self._times.append(now_ns)
        self._forget(now_ns)

    def rate(self, now_ns: int) -> float:
        """Per second, over the window or, early on, over the time since the first one."""
        self._forget(now_ns)
        if self._first_ns is None:
            return 0.0
        span_ns = min(self._window_ns, now_ns - self._first_ns)
        return len(self._times) / (span_ns / 1e9) if span_ns > 0 else 0.0

    def _forget(self, now_ns: int) -> None:
        while self._times and self._times[0] <= now_ns - self._window_ns:
            self._times.popleft()


@dataclass(frozen=True)
class SourceHealth:
    """How one source is doing, as `/metrics`, `/healthz` and the preview page show it."""

    state: SourceState | None = None  # None: before the source first said anything
    detail: str | None = None  # why, for a source that is not connected
    since: float = 0.0  # wall clock: when it entered `state`
    problem: SourceProblem | None = None  # down for something a person must fix
    down_since: float | None = None  # wall clock: not connected since (None: it is)
    last_frame_at: float | None = None  # wall clock of its last decoded frame
    fps: float = 0.0  # frames decoded a second, lately
    processed: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)  # "<stage>:<reason>"
    still: int = 0  # processed frames the model was spared: nothing moved

    def __add__(self, other: SourceHealth) -> SourceHealth:
        """The counts of both; the state of the one that changed state last (a shard
        restarted for this source is newer than the one that died)."""
        newer = other if other.since >= self.since else self
        frames = [t for t in (self.last_frame_at, other.last_frame_at) if t is not None]
        return SourceHealth(
            state=newer.state,
            detail=newer.detail,
            since=newer.since,
            problem=newer.problem,
            down_since=newer.down_since,
            last_frame_at=max(frames) if frames else None,
            fps=newer.fps,
            processed=self.processed + other.processed,
            dropped=_add(self.dropped, other.dropped),
            still=self.still + other.still,
        )

    def ended(self) -> SourceHealth:
        return replace(self, fps=0.0)


@dataclass(frozen=True)
class Gauge:
    """A watched measure's latest value and whether it has raised its alarm."""

    value: float
    raised: bool

    def to_dict(self) -> dict[str, Any]:
        return {"value": round(self.value, 4), "raised": self.raised}


@dataclass(frozen=True)
class SourceQuality:
    """A source's camera health and detection drift (`health:`): each condition's
    measure and each drift feature's latest score."""

    conditions: Mapping[str, Gauge] = field(default_factory=dict)  # HealthCondition
    drift: Mapping[str, Gauge] = field(default_factory=dict)  # DriftFeature
    at: float = 0.0  # wall clock of the latest change: across shards, the newer wins

    def __add__(self, other: SourceQuality) -> SourceQuality:
        return other if other.at >= self.at else self

    @property
    def raised(self) -> list[str]:
        """What is wrong now: raised conditions, and drifted features as `drift:FEATURE`."""
        return [c for c, g in self.conditions.items() if g.raised] + [
            f"drift:{f}" for f, g in self.drift.items() if g.raised
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "raised": self.raised,
            "conditions": {c: g.to_dict() for c, g in sorted(self.conditions.items())},
            "drift": {f: g.to_dict() for f, g in sorted(self.drift.items())},
        }


def _add(a: Mapping[Any, int], b: Mapping[Any, int]) -> dict[Any, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out


@dataclass(frozen=True)
class Totals:
    """A run's counts at one moment, as plain values (they cross process boundaries)."""

    sources: tuple[str, ...] = ()
    decoded: Mapping[str, int] = field(default_factory=dict)  # per source
    processed: int = 0
    still: int = 0  # of the processed frames, those the motion gate spared the model
    late: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)  # "<stage>:<reason>"
    emitted: int = 0
    delivered: int = 0
    lost: int = 0
    reconnects: Mapping[str, int] = field(default_factory=dict)  # per source
    latency_buckets: Mapping[int, int] = field(default_factory=dict)
    latency_max_ms: float = 0.0
    objects: Mapping[str, int] = field(default_factory=dict)  # appeared, left
    active: Mapping[str, int] = field(default_factory=dict)  # per source, objects in view
    zones: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # entered, exited
    lines: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # in, out
    providers: tuple[str, ...] = ()
    health: Mapping[str, SourceHealth] = field(default_factory=dict)  # per source
    sink_down_since: float | None = None  # wall clock: Redis has refused events since
    quality: Mapping[str, SourceQuality] = field(default_factory=dict)  # per source watched

    def __add__(self, other: Totals) -> Totals:
        """Both runs' counts together (the sources of shards are disjoint)."""
        return Totals(
            sources=tuple(dict.fromkeys(self.sources + other.sources)),
            decoded=_add(self.decoded, other.decoded),
            processed=self.processed + other.processed,
            still=self.still + other.still,
            late=self.late + other.late,
            dropped=_add(self.dropped, other.dropped),
            emitted=self.emitted + other.emitted,
            delivered=self.delivered + other.delivered,
            lost=self.lost + other.lost,
            reconnects=_add(self.reconnects, other.reconnects),
            latency_buckets=_add(self.latency_buckets, other.latency_buckets),
            latency_max_ms=max(self.latency_max_ms, other.latency_max_ms),
            objects=_add(self.objects, other.objects),
            active=_add(self.active, other.active),
            zones=_add_regions(self.zones, other.zones),
            lines=_add_regions(self.lines, other.lines),
            providers=tuple(dict.fromkeys(self.providers + other.providers)),
            health={
                sid: self.health.get(sid, SourceHealth()) + other.health.get(sid, SourceHealth())
                for sid in {**self.health, **other.health}
            },
            sink_down_since=min(
                (t for t in (self.sink_down_since, other.sink_down_since) if t is not None),
                default=None,
            ),
            quality={
                sid: self.quality.get(sid, SourceQuality())
                + other.quality.get(sid, SourceQuality())
                for sid in {**self.quality, **other.quality}
            },
        )

    def ended(self) -> Totals:
        """These counts once their run has ended: no object is in view any more, no
        frame comes in, and its sink writes no more."""
        return replace(
            self,
            active={},
            health={sid: h.ended() for sid, h in self.health.items()},
            sink_down_since=None,
        )

    def with_lost(self, n: int) -> Totals:
        return replace(self, lost=self.lost + n)


def _add_regions(
    a: Mapping[str, Mapping[str, int]], b: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    return {name: _add(a.get(name, {}), b.get(name, {})) for name in {**a, **b}}


def sum_totals(parts: Iterable[Totals]) -> Totals:
    out = Totals()
    for part in parts:
        out = out + part
    return out


def render(totals: Totals, wall_s: float) -> dict[str, Any]:
    """The `--stats-json` document of `totals` over a run of `wall_s` seconds."""
    t = totals
    latency = LatencyHistogram(t.latency_buckets, t.latency_max_ms)
    return {
        "frames": {
            "decoded": sum(t.decoded.values()),
            "processed": t.processed,
            "still": t.still,
            "late": t.late,
            "dropped": dict(sorted(t.dropped.items())),
        },
        "events": {"emitted": t.emitted, "delivered": t.delivered, "lost": t.lost},
        "latency_ms": {
            "p50": round(latency.percentile(0.50), 2),
            "p95": round(latency.percentile(0.95), 2),
            "p99": round(latency.percentile(0.99), 2),
            "max": round(latency.max_ms, 2),
        },
        "fps": round(t.processed / wall_s, 2) if wall_s > 0 else 0.0,
        "wall_s": round(wall_s, 3),
        "sources": {sid: _source_doc(t, sid) for sid in t.sources},
        "providers": list(t.providers),
        "objects": {
            "appeared": t.objects.get("appeared", 0),
            "left": t.objects.get("left", 0),
            "active": sum(t.active.values()),
        },
        "zones": {
            name: {
                "entered": c.get("entered", 0),
                "exited": c.get("exited", 0),
                "inside": c.get("entered", 0) - c.get("exited", 0),
            }
            for name, c in sorted(t.zones.items())
        },
        "lines": {
            name: {"in": c.get("in", 0), "out": c.get("out", 0)}
            for name, c in sorted(t.lines.items())
        },
        "health": {sid: q.to_dict() for sid, q in sorted(t.quality.items())},
    }


def _source_doc(t: Totals, sid: str) -> dict[str, Any]:
    h = t.health.get(sid, SourceHealth())
    return {
        "reconnects": t.reconnects.get(sid, 0),
        "frames": t.decoded.get(sid, 0),
        "processed": h.processed,
        "still": h.still,
        "dropped": dict(sorted(h.dropped.items())),
        "state": h.state.value if h.state is not None else STARTING,
        "detail": h.detail,
        "problem": None if h.problem is None else h.problem.value,
        "last_frame_at": h.last_frame_at,
        "fps": round(h.fps, 2),
    }


@dataclass
class _SourceCounts:
    """What `RunStats` counts of one source, under its lock."""

    state: SourceState | None = None
    detail: str | None = None
    since: float = 0.0
    problem: SourceProblem | None = None
    down_since: float | None = None
    last_frame_at: float | None = None
    rate: RateMeter = field(default_factory=RateMeter)
    processed: int = 0
    still: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def health(self, now_ns: int) -> SourceHealth:
        return SourceHealth(
            self.state, self.detail, self.since, self.problem, self.down_since,
            self.last_frame_at, self.rate.rate(now_ns),
            self.processed, dict(self.dropped), self.still,
        )  # fmt: skip


class RunStats:
    def __init__(self, source_ids: list[str], clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started_ns = clock.monotonic_ns()
        self._decoded: Counter[str] = Counter()
        self._processed = 0
        self._still = 0
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
        self._health = {sid: _SourceCounts() for sid in source_ids}
        self._quality: dict[str, SourceQuality] = {}
        self._sink_down_since: float | None = None
        self.providers: list[str] = []

    def start_clock(self) -> None:
        """Start the run's clock (frames per second, duration) again, once all is ready:
        loading and warming up the model is not running time."""
        with self._lock:
            self._started_ns = self._clock.monotonic_ns()

    def frame_decoded(self, source_id: str) -> None:
        now_ns, now = self._clock.monotonic_ns(), self._clock.time()
        with self._lock:
            self._decoded[source_id] += 1
            counts = self._health[source_id]
            counts.last_frame_at = now
            counts.rate.add(now_ns)

    def frame_dropped(self, stage: str, reason: str, source_id: str, n: int = 1) -> None:
        key = f"{stage}:{reason}"
        with self._lock:
            self._dropped[key] += n
            self._health[source_id].dropped[key] += n

    def frame_processed(
        self, source_id: str, latency_ms: float | None, late: bool = False, still: bool = False
    ) -> None:
        """A frame left postprocessing; with a latency when it caused no event. `late`:
        its inference ended past its deadline; `still`: nothing moved, the model was not
        run on it."""
        with self._lock:
            self._processed += 1
            self._still += still
            counts = self._health[source_id]
            counts.processed += 1
            counts.still += still
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

    def source_state(
        self,
        source_id: str,
        state: SourceState,
        detail: str | None,
        problem: SourceProblem | None = None,
    ) -> None:
        """A source changed state; `detail` says why, `problem` what a person must fix."""
        now = self._clock.time()
        with self._lock:
            counts = self._health[source_id]
            counts.state, counts.detail, counts.since = state, detail, now
            counts.problem = problem
            if state in (SourceState.DISCONNECTED, SourceState.RECONNECTING):
                counts.down_since = counts.down_since or now
            else:
                counts.down_since = None

    def sink_down(self, down: bool) -> None:
        """The sink could not write (True) or wrote again (False)."""
        now = self._clock.time()
        with self._lock:
            if not down:
                self._sink_down_since = None
            elif self._sink_down_since is None:
                self._sink_down_since = now

    def camera_health(self, source_id: str, gauges: Mapping[str, Gauge]) -> None:
        """A source's condition measures, as its picture watcher last judged them."""
        now = self._clock.time()
        with self._lock:
            q = self._quality.get(source_id, SourceQuality())
            self._quality[source_id] = replace(q, conditions=dict(gauges), at=now)

    def drift(self, source_id: str, gauges: Mapping[str, Gauge]) -> None:
        """A source's drift scores, as its last judged window left them."""
        now = self._clock.time()
        with self._lock:
            q = self._quality.get(source_id, SourceQuality())
            self._quality[source_id] = replace(q, drift=dict(gauges), at=now)

    def totals(self) -> Totals:
        now_ns = self._clock.monotonic_ns()
        with self._lock:
            return Totals(
                sources=tuple(self._source_ids),
                decoded=dict(self._decoded),
                processed=self._processed,
                still=self._still,
                late=self._late,
                dropped=dict(self._dropped),
                emitted=self._emitted,
                delivered=self._delivered,
                lost=self._lost,
                reconnects=dict(self._reconnects),
                latency_buckets=self._latency.buckets,
                latency_max_ms=self._latency.max_ms,
                objects=dict(self._objects),
                active=dict(self._active),
                zones={name: dict(c) for name, c in self._zones.items()},
                lines={name: dict(c) for name, c in self._lines.items()},
                providers=tuple(self.providers),
                health={sid: c.health(now_ns) for sid, c in self._health.items()},
                sink_down_since=self._sink_down_since,
                quality=dict(self._quality),
            )

    def wall_s(self) -> float:
        """Seconds since the run's clock started."""
        return (self._clock.monotonic_ns() - self._started_ns) / 1e9

    def snapshot(self) -> dict[str, Any]:
        return render(self.totals(), self.wall_s())
