"""Latency percentiles and the stats document."""

from __future__ import annotations

import pytest

from streamer.runtime.stats import LatencyHistogram, RunStats


def test_percentiles_are_within_one_percent():
    hist = LatencyHistogram()
    for ms in range(1, 1001):
        hist.add(float(ms))
    assert hist.percentile(0.5) == pytest.approx(500, rel=0.011)
    assert hist.percentile(0.99) == pytest.approx(990, rel=0.011)
    assert hist.percentile(1.0) == 1000
    assert hist.max_ms == 1000


def test_empty_histogram():
    assert LatencyHistogram().percentile(0.99) == 0.0


def test_snapshot_has_the_documented_shape():
    stats = RunStats(["cam1", "cam2"])
    stats.frame_decoded("cam1")
    stats.frame_dropped("infer", "deadline")
    stats.frame_processed(12.0, late=True)
    stats.events_emitted(2)
    stats.events_delivered([5.0, None])
    stats.source_reconnected("cam2")
    stats.count_regions(["door", "yard"], ["gate"])
    stats.object_event("object_appeared", None, None)
    stats.object_event("zone_entered", "door", None)
    stats.object_event("line_crossed", "gate", "in")
    stats.objects_active("cam1", 1)
    s = stats.snapshot()
    assert s["frames"] == {
        "decoded": 1, "processed": 1, "late": 1, "dropped": {"infer:deadline": 1}}  # fmt: skip
    assert s["events"] == {"emitted": 2, "delivered": 2, "lost": 0}
    assert set(s["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert s["latency_ms"]["max"] == 12.0
    assert s["sources"] == {
        "cam1": {"reconnects": 0, "frames": 1},
        "cam2": {"reconnects": 1, "frames": 0},
    }
    assert s["objects"] == {"appeared": 1, "left": 0, "active": 1}
    assert s["zones"] == {
        "door": {"entered": 1, "exited": 0, "inside": 1},
        "yard": {"entered": 0, "exited": 0, "inside": 0},
    }
    assert s["lines"] == {"gate": {"in": 1, "out": 0}}
    assert set(s) == {"frames", "events", "latency_ms", "fps", "wall_s", "sources", "providers",
                      "objects", "zones", "lines"}  # fmt: skip
