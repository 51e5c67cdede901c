"""Prometheus metrics for a running pipeline, read from its stats at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Snapshot = Callable[[], dict[str, Any]]


class StatsCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        """`snapshot`: the pipeline's stats document (`Pipeline.stats`)."""
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        frames = CounterMetricFamily("streamer_frames", "Frames per source", labels=["source"])
        for source, info in s["sources"].items():
            frames.add_metric([source], info["frames"])
        yield frames
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
            stage, reason = key.split(":", 1)
            dropped.add_metric([stage, reason], n)
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


def serve_metrics(snapshot: Snapshot, port: int) -> None:
    """Serve /metrics on `port` from a background thread for the life of the process."""
    REGISTRY.register(StatsCollector(snapshot))
    start_http_server(port)
