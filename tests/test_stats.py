"""Latency percentiles and the stats document."""

from __future__ import annotations

import pytest

from streamer.cli.status import describe
from streamer.events.event import SourceState
from streamer.runtime.stats import (
    Gauge,
    LatencyHistogram,
    RateMeter,
    RunStats,
    SourceHealth,
    SourceQuality,
    Totals,
    render,
)


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
    stats.frame_dropped("infer", "deadline", "cam1")
    stats.frame_processed("cam1", 12.0, late=True)
    stats.source_state("cam2", SourceState.DISCONNECTED, "connection refused")
    stats.events_emitted(2)
    stats.events_delivered([5.0, None])
    stats.source_reconnected("cam2")
    stats.count_regions(["door", "yard"], ["gate"])
    stats.object_event("object_appeared", None, None)
    stats.object_event("zone_entered", "door", None)
    stats.object_event("line_crossed", "gate", "in")
    stats.objects_active("cam1", 1)
    stats.camera_health("cam1", {"blur": Gauge(0.2, True)})
    stats.drift("cam1", {"class_mix": Gauge(0.05, False)})
    s = stats.snapshot()
    assert s["frames"] == {
        "decoded": 1, "processed": 1, "still": 0, "late": 1, "dropped": {"infer:deadline": 1},
    }  # fmt: skip
    assert s["events"] == {"emitted": 2, "delivered": 2, "lost": 0}
    assert set(s["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert s["latency_ms"]["max"] == 12.0
    assert s["sources"]["cam2"]["reconnects"] == 1
    assert s["sources"]["cam1"]["frames"] == 1
    assert s["sources"]["cam1"]["processed"] == 1
    assert s["sources"]["cam1"]["dropped"] == {"infer:deadline": 1}
    assert s["sources"]["cam1"]["state"] == "starting"
    assert s["sources"]["cam1"]["last_frame_at"] is not None
    assert (s["sources"]["cam2"]["state"], s["sources"]["cam2"]["detail"]) == (
        "disconnected", "connection refused")  # fmt: skip
    assert s["sources"]["cam2"]["last_frame_at"] is None
    assert s["objects"] == {"appeared": 1, "left": 0, "active": 1}
    assert s["zones"] == {
        "door": {"entered": 1, "exited": 0, "inside": 1},
        "yard": {"entered": 0, "exited": 0, "inside": 0},
    }
    assert s["lines"] == {"gate": {"in": 1, "out": 0}}
    assert s["health"] == {
        "cam1": {
            "raised": ["blur"],
            "conditions": {"blur": {"value": 0.2, "raised": True}},
            "drift": {"class_mix": {"value": 0.05, "raised": False}},
        }
    }
    assert set(s) == {"frames", "events", "latency_ms", "fps", "wall_s", "sources", "providers",
                      "objects", "zones", "lines", "health"}  # fmt: skip


def test_a_source_rate_is_over_the_last_seconds_and_falls_to_zero_when_frames_stop():
    meter = RateMeter(window_s=5.0)
    s = 1_000_000_000
    for i in range(100):  # 10 fps for 10 s
        meter.add(i * s // 10)
    assert meter.rate(10 * s) == pytest.approx(10.0, rel=0.05)
    # The last 3 s of frames in a 5 s window:
    assert meter.rate(12 * s) == pytest.approx(6.0, rel=0.05)
    assert meter.rate(16 * s) == 0.0
    early = RateMeter(window_s=5.0)
    for i in range(10):  # the first second of a 10 fps camera
        early.add(i * s // 10)
    assert early.rate(s) == pytest.approx(10.0)


def test_a_restarted_sources_health_is_the_newer_ones_with_both_counts():
    died = SourceHealth(SourceState.CONNECTED, "rtsp://cam", since=10.0, last_frame_at=50.0,
                        fps=15.0, processed=100, dropped={"decode:decode_error": 1})  # fmt: skip
    restarted = SourceHealth(SourceState.DISCONNECTED, "shard-1 restarted", since=51.0, processed=3)
    both = died + restarted
    assert (both.state, both.detail, both.last_frame_at) == (
        "disconnected",
        "shard-1 restarted",
        50.0,
    )
    assert both.processed == 103 and both.dropped == {"decode:decode_error": 1}
    assert (restarted + died).state == "disconnected"  # whichever order they are added in


def test_a_sources_camera_health_is_the_latest_any_shard_reported():
    old = SourceQuality({"blur": Gauge(0.1, True)}, {}, at=10.0)
    new = SourceQuality({"blur": Gauge(0.9, False)}, {"confidence": Gauge(0.3, True)}, at=20.0)
    for both in (Totals(quality={"cam": old}) + Totals(quality={"cam": new}),
                 Totals(quality={"cam": new}) + Totals(quality={"cam": old})):  # fmt: skip
        assert both.quality["cam"] == new
        assert both.quality["cam"].raised == ["drift:confidence"]
    doc = render(Totals(sources=("cam",), quality={"cam": new}), 1.0)["health"]
    assert doc == {"cam": {"raised": ["drift:confidence"],
                           "conditions": {"blur": {"value": 0.9, "raised": False}},
                           "drift": {"confidence": {"value": 0.3, "raised": True}}}}  # fmt: skip


def test_streamer_status_names_what_is_raised_on_each_camera():
    stats = RunStats(["gate", "yard"])
    stats.camera_health("gate", {"blur": Gauge(0.1, True), "moved": Gauge(0.9, False)})
    stats.drift("yard", {"class_mix": Gauge(0.05, False)})
    doc = {**stats.snapshot(), "pipeline": "site", "published_at": 0.0}
    lines = describe(doc).splitlines()
    assert "camera gate: blur" in lines
    assert not any(line.startswith("camera yard") for line in lines)
