"""Live cameras over a real RTSP server: several cameras, and bounded latency under overload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DEMO_CONFIDENCE, DEMO_FPS, read_events, run_with_stats, sources_pipeline
from tools.rtsp import RtspServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def two_cameras(demo_camera_clip: Path) -> Iterator[RtspServer]:
    with RtspServer({"cam1": demo_camera_clip, "cam2": demo_camera_clip}) as server:
        yield server


@pytest.fixture
def fast_camera(camera_clip: Path) -> Iterator[RtspServer]:
    with RtspServer({"cam1": camera_clip}, fps=60) as server:
        yield server


def test_two_cameras_give_contract_valid_events_within_the_budget(
    tmp_path, redis_client, redis_server, two_cameras, demo_model
):
    urls = {sid: two_cameras.url(sid) for sid in ("cam1", "cam2")}
    pipeline = sources_pipeline(tmp_path, "lobby", urls, demo_model,
                             DEMO_CONFIDENCE + "realtime: {max_latency_ms: 500}\n")  # fmt: skip
    result, stats = run_with_stats(pipeline, redis_server.url, "--duration", "6")
    assert result.returncode == 0, result.stderr
    events = read_events(redis_client, "streamer:lobby:events")
    for sid in urls:
        mine = [e for e in events if e["source"] == sid]
        assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1))
        assert (mine[0]["type"], mine[0]["status"]) == ("source_status", "connected")
        assert (mine[-1]["status"], mine[-1]["detail"]) == ("ended", "stopped")
        detections = [e for e in mine if e["type"] == "detections"]
        # The camera's frames came for most of the run, and nearly each gave its event.
        decoded = stats["sources"][sid]["frames"]
        assert decoded >= 0.5 * DEMO_FPS * stats["wall_s"], (sid, stats)
        assert decoded >= len(detections) >= 0.8 * decoded, (sid, len(detections), decoded)
        indices = [e["frame"]["index"] for e in detections]
        assert indices == sorted(indices)
    assert stats["latency_ms"]["p99"] <= 500
    assert "rtsp://127.0.0.1" in result.stderr


def test_an_overloaded_camera_keeps_latency_bounded_and_processes_the_newest_frames(
    tmp_path, redis_client, redis_server, fast_camera, yolov8n
):
    budget_ms = 400
    pipeline = sources_pipeline(
        tmp_path, "busy", {"cam1": fast_camera.url("cam1")}, yolov8n,
        f"  batch: {{max_size: 1}}\nrealtime: {{max_latency_ms: {budget_ms}}}\n",
    )  # fmt: skip
    result, stats = run_with_stats(pipeline, redis_server.url, "--duration", "10")
    assert result.returncode == 0, result.stderr
    frames = stats["frames"]
    dropped = sum(frames["dropped"].values())
    assert frames["decoded"] >= 400  # 60 fps for about 9 s
    assert dropped >= frames["decoded"] * 0.2, frames  # the model cannot keep up: frames are shed
    assert frames["processed"] + dropped <= frames["decoded"]
    assert stats["latency_ms"]["p99"] <= budget_ms, stats["latency_ms"]
    detections = [e for e in read_events(redis_client, "streamer:busy:events")
                  if e["type"] == "detections"]  # fmt: skip
    # Freshness: the frames processed keep pace with the camera. Each one was decoded less
    # than the budget before its event, so its index trails the newest decoded by little.
    lag_s = [(e["emitted_at"] - e["frame"]["captured_at"]) for e in detections]
    assert max(lag_s) <= budget_ms / 1000 + 0.1
    last_index = detections[-1]["frame"]["index"]
    assert last_index >= frames["decoded"] - 60 * 1.0
