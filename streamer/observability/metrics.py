"""Prometheus metrics for a running pipeline, read from its stats at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamer.events.event import SourceProblem, SourceState
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.stats import STARTING

Snapshot = Callable[[], dict[str, Any]]
SOURCE_STATES = (STARTING, *(s.value for s in SourceState))


class StatsCollector(Collector):
    def __init__(self, snapshot: Snapshot, clock: Clock = SYSTEM_CLOCK) -> None:
        """`snapshot`: the pipeline's stats document (`Pipeline.stats`); `clock`: what
        the seconds since a source's last frame are measured with."""
        self._snapshot = snapshot
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        yield CounterMetricFamily(
            "streamer_frames_processed",
            "Frames through postprocessing",
            value=s["frames"]["processed"],
        )
        yield CounterMetricFamily(
            "streamer_frames_late",
            "Frames whose inference ended past their deadline",
            value=s["frames"]["late"],
        )
        dropped = CounterMetricFamily(
            "streamer_frames_dropped", "Dropped frames", labels=["stage", "reason"]
        )
        for key, n in s["frames"]["dropped"].items():
            dropped.add_metric(key.split(":", 1), n)
        yield dropped
        events = CounterMetricFamily("streamer_events", "Events by outcome", labels=["outcome"])
        for outcome in ("emitted", "delivered", "lost"):
            events.add_metric([outcome], s["events"][outcome])
        yield events
        latency = GaugeMetricFamily(
            "streamer_latency_ms", "Glass-to-event latency", labels=["quantile"]
        )
        for q in ("p50", "p95", "p99", "max"):
            latency.add_metric([q], s["latency_ms"][q])
        yield latency
        yield from self._sources(s["sources"])
        yield from self._quality(s["health"])
        shards = s.get("shards")
        if shards is not None:  # a run over several processes
            restarts = CounterMetricFamily(
                "streamer_shard_restarts", "Times a shard was restarted", labels=["shard", "host"]
            )
            sources = GaugeMetricFamily(
                "streamer_shard_sources", "Sources a shard runs", labels=["shard", "host"]
            )
            for name, shard in shards.items():
                restarts.add_metric([name, shard["host"]], shard["restarts"])
                sources.add_metric([name, shard["host"]], len(shard["sources"]))
            yield restarts
            yield sources

    def _sources(self, sources: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        """Per source: whether it is up and why not, and how its frames go."""
        connected = GaugeMetricFamily(
            "streamer_source_connected", "1 while the source is connected", labels=["source"]
        )
        state = GaugeMetricFamily(
            "streamer_source_state", "1 for the state the source is in", labels=["source", "state"]
        )
        reconnects = CounterMetricFamily(
            "streamer_source_reconnects", "Times the source was reconnected", labels=["source"]
        )
        decoded = CounterMetricFamily(
            "streamer_source_frames_decoded", "Frames decoded", labels=["source"]
        )
        processed = CounterMetricFamily(
            "streamer_source_frames_processed", "Frames through postprocessing", labels=["source"]
        )
        still = CounterMetricFamily(
            "streamer_source_frames_still",
            "Processed frames the model was not run on: nothing moved (motion gating)",
            labels=["source"],
        )
        dropped = CounterMetricFamily(
            "streamer_source_frames_dropped",
            "Frames dropped",
            labels=["source", "stage", "reason"],
        )
        age = GaugeMetricFamily(
            "streamer_source_last_frame_age_seconds",
            "Seconds since the source's last decoded frame (absent before the first)",
            labels=["source"],
        )
        fps = GaugeMetricFamily(
            "streamer_source_fps", "Frames decoded a second, over the last 5 s", labels=["source"]
        )
        problem = GaugeMetricFamily(
            "streamer_source_problem",
            "1 while the source is down for something a person must fix",
            labels=["source", "problem"],
        )
        now = self._clock.time()
        for sid, info in sources.items():
            connected.add_metric([sid], float(info["state"] == SourceState.CONNECTED))
            for name in SOURCE_STATES:
                state.add_metric([sid, name], float(info["state"] == name))
            reconnects.add_metric([sid], info["reconnects"])
            decoded.add_metric([sid], info["frames"])
            processed.add_metric([sid], info["processed"])
            still.add_metric([sid], info["still"])
            for key, n in info["dropped"].items():
                dropped.add_metric([sid, *key.split(":", 1)], n)
            if info["last_frame_at"] is not None:
                age.add_metric([sid], max(0.0, now - info["last_frame_at"]))
            fps.add_metric([sid], info["fps"])
            for name in SourceProblem:
                problem.add_metric([sid, name.value], float(info["problem"] == name))
        yield from (
            connected, state, problem, reconnects, decoded, processed, still, dropped, age, fps
        )  # fmt: skip

    def _quality(self, health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        """Per source watched (`health:`): each condition's measure and whether it is
        raised, each drift feature's score and whether it drifted."""
        if not health:
            return
        value = GaugeMetricFamily(
            "streamer_camera_health_value",
            "The measure each camera-health condition is judged by (its unit is the "
            "condition's: docs/operations.md)",
            labels=["source", "condition"],
        )
        raised = GaugeMetricFamily(
            "streamer_camera_health_raised",
            "1 while the camera-health condition is raised",
            labels=["source", "condition"],
        )
        score = GaugeMetricFamily(
            "streamer_drift_score",
            "Jensen-Shannon divergence of the last window from the reference (0..1)",
            labels=["source", "feature"],
        )
        drifted = GaugeMetricFamily(
            "streamer_drift_raised", "1 while the feature has drifted", labels=["source", "feature"]
        )
        for sid, q in health.items():
            for condition, gauge in q["conditions"].items():
                value.add_metric([sid, condition], gauge["value"])
                raised.add_metric([sid, condition], float(gauge["raised"]))
            for feature, gauge in q["drift"].items():
                score.add_metric([sid, feature], gauge["value"])
                drifted.add_metric([sid, feature], float(gauge["raised"]))
        yield from (value, raised, score, drifted)
