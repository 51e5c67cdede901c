"""Cameras that fail, against real RTSP servers: killed, frozen, late, and a clean SIGTERM.

Each camera has its own server process, so one can be killed (SIGKILL), frozen (SIGSTOP)
or started late while the other keeps streaming: the failing camera must come back by
itself and the other must never be interrupted.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.config.schema import ReconnectConfig
from streamer.pipeline.lifecycle import DRAIN_TIMEOUT_S
from streamer.sources.timing import Backoff
from tests.conftest import DEMO_CONFIDENCE, DEMO_FPS, read_events, sources_pipeline
from tools.rtsp import RtspServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def cameras(demo_camera_clip: Path) -> Iterator[tuple[RtspServer, RtspServer]]:
    """Two cameras, each served by its own process."""
    with RtspServer({"cam1": demo_camera_clip}, fps=DEMO_FPS) as one, \
            RtspServer({"cam2": demo_camera_clip}, fps=DEMO_FPS) as two:  # fmt: skip
        yield one, two


class Schedule:
    """Actions at given seconds after `start()`, on timers the test joins."""

    def __init__(self, *steps: tuple[float, Callable[[], Any]]) -> None:
        self._timers = [threading.Timer(at, action) for at, action in steps]

    def start(self) -> None:
        for timer in self._timers:
            timer.start()

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
            if timer.is_alive():
                timer.join(timeout=30)


def run_live(pipeline: Path, redis_url: str, seconds: float, schedule: Schedule) -> dict[str, Any]:
    """`streamer run` for `seconds` while `schedule` plays; the stats it wrote."""
    stats_file = pipeline.with_suffix(".stats.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", str(pipeline), "--redis-url", redis_url,
         "--duration", str(seconds), "--stats-json", str(stats_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    schedule.start()
    try:
        _, stderr = proc.communicate(timeout=seconds + 60)
    finally:
        schedule.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, stderr
    stats: dict[str, Any] = json.loads(stats_file.read_text())
    stats["stderr"] = stderr
    return stats


def camera_events(events: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    mine = [e for e in events if e["source"] == source]
    assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1))
    return mine


def statuses(mine: list[dict[str, Any]]) -> list[str]:
    return [e["status"] for e in mine if e["type"] == "source_status"]


def largest_gap_s(mine: list[dict[str, Any]]) -> float:
    times = [e["frame"]["captured_at"] for e in mine if e["type"] == "detections"]
    return max(b - a for a, b in itertools.pairwise(times))


def outage_s(mine: list[dict[str, Any]]) -> float:
    """How long a camera was away: from its first `disconnected` to its `connected` after."""
    statuses = [(e["status"], e["emitted_at"]) for e in mine if e["type"] == "source_status"]
    down = next(i for i, (status, _) in enumerate(statuses) if status == "disconnected")
    up = next(at for status, at in statuses[down:] if status == "connected")
    return float(up - statuses[down][1])


def two_camera_pipeline(tmp_path: Path, cameras: tuple[RtspServer, RtspServer], model: Path,
                        source_extra: str = "") -> Path:  # fmt: skip
    one, two = cameras
    path = sources_pipeline(
        tmp_path, "site", {"cam1": one.url("cam1"), "cam2": two.url("cam2")}, model,
        DEMO_CONFIDENCE + "realtime: {max_latency_ms: 800}\n",
    )  # fmt: skip
    if source_extra:  # settings for cam1 only
        text = path.read_text().replace(f"uri: '{one.url('cam1')}'",
                                        f"uri: '{one.url('cam1')}', {source_extra}")  # fmt: skip
        path.write_text(text)
    return path


def test_a_killed_camera_comes_back_and_the_other_is_never_interrupted(
    tmp_path, redis_server, redis_client, cameras, demo_model
):
    one, _two = cameras
    pipeline = two_camera_pipeline(tmp_path, cameras, demo_model)
    stats = run_live(pipeline, redis_server.url, 16,
                     Schedule((4.0, one.kill), (7.0, one.restart)))  # fmt: skip
    events = read_events(redis_client, "streamer:site:events")

    cam1 = camera_events(events, "cam1")
    seen = statuses(cam1)
    assert seen[0] == "connected" and seen[-1] == "ended"
    assert "disconnected" in seen and "reconnecting" in seen
    assert seen.count("connected") >= 2  # connected again after the restart
    back = max(i for i, e in enumerate(cam1) if e.get("status") == "connected")
    resumed = [e for e in cam1[back:] if e["type"] == "detections"]
    assert len(resumed) >= 2 * DEMO_FPS, "events did not resume after the restart"
    assert stats["sources"]["cam1"]["reconnects"] >= 1

    cam2 = camera_events(events, "cam2")
    assert statuses(cam2) == ["connected", "ended"]
    # Not held up: its longest wait between frames is a small part of the other's outage.
    assert largest_gap_s(cam2) < outage_s(cam1) / 3, "the healthy camera was held up"
    assert stats["sources"]["cam2"]["reconnects"] == 0
    assert "rtsp://127.0.0.1" in stats["stderr"]  # the retries are reported


def test_a_frozen_camera_is_noticed_and_reconnected(
    tmp_path, redis_server, redis_client, cameras, demo_model
):
    """SIGSTOP: the connection stays open and silent; the read timeout notices it."""
    one, _two = cameras
    pipeline = two_camera_pipeline(tmp_path, cameras, demo_model, "read_timeout_s: 2")
    stats = run_live(pipeline, redis_server.url, 18,
                     Schedule((4.0, one.freeze), (10.0, one.thaw)))  # fmt: skip
    events = read_events(redis_client, "streamer:site:events")

    cam1 = camera_events(events, "cam1")
    disconnected = [e for e in cam1 if e.get("status") == "disconnected"]
    assert disconnected, statuses(cam1)
    first = disconnected[0]
    assert first["detail"]  # the reason
    # Said within read_timeout_s (2 s) of its last frame, not one read timeout later.
    last_frame = max(e["frame"]["captured_at"] for e in cam1[: cam1.index(first)]
                     if e["type"] == "detections")  # fmt: skip
    assert first["emitted_at"] - last_frame < 2 + 0.8, first
    back = max(i for i, e in enumerate(cam1) if e.get("status") == "connected")
    assert back > cam1.index(first)
    assert [e for e in cam1[back:] if e["type"] == "detections"], "no events after the thaw"
    cam2 = camera_events(events, "cam2")
    assert largest_gap_s(cam2) < outage_s(cam1) / 3, "the healthy camera was held up"
    assert stats["sources"]["cam2"]["reconnects"] == 0


def test_a_camera_that_is_down_at_start_is_retried_until_it_comes_up(
    tmp_path, redis_server, redis_client, demo_camera_clip, demo_model
):
    late = RtspServer({"cam1": demo_camera_clip}, fps=DEMO_FPS)
    pipeline = sources_pipeline(
        tmp_path, "late", {"cam1": late.url("cam1")}, demo_model, DEMO_CONFIDENCE
    )
    try:
        stats = run_live(pipeline, redis_server.url, 12, Schedule((3.0, late.start)))
    finally:
        late.stop()
    mine = camera_events(read_events(redis_client, "streamer:late:events"), "cam1")
    seen = statuses(mine)
    assert seen[0] == "disconnected" and "connected" in seen and seen[-1] == "ended"
    assert any(e["type"] == "detections" for e in mine)
    assert stats["sources"]["cam1"]["reconnects"] >= 1


def test_sigterm_on_live_cameras_exits_quickly_and_delivers_every_event(
    tmp_path, redis_server, redis_client, cameras, demo_model
):
    pipeline = two_camera_pipeline(tmp_path, cameras, demo_model)
    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", str(pipeline), "--redis-url",
         redis_server.url, "--stats-json", str(stats_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while redis_client.xlen("streamer:site:events") < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, stderr
    # The drain finished by itself instead of being cut off at its limit.
    assert "draining took too long" not in stderr
    assert took < DRAIN_TIMEOUT_S, f"took {took:.1f} s to stop"
    stats = json.loads(stats_file.read_text())
    events = read_events(redis_client, "streamer:site:events")
    assert stats["events"]["emitted"] == stats["events"]["delivered"] == len(events)
    assert stats["events"]["lost"] == 0
    for source in ("cam1", "cam2"):
        assert statuses(camera_events(events, source))[-1] == "ended"


def test_backoff_doubles_to_the_maximum_with_jitter_and_resets():
    config = ReconnectConfig(initial_delay_s=0.5, max_delay_s=4.0, jitter=0.2)
    backoff = Backoff(config, random.Random(7))
    delays = [backoff.next_delay_s() for _ in range(6)]
    for delay, base in zip(delays, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0], strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert len(set(delays)) == len(delays)  # randomised, not in lockstep
    backoff.reset()
    assert 0.4 <= backoff.next_delay_s() <= 0.6
    steady = Backoff(ReconnectConfig(initial_delay_s=1.0, jitter=0.0), random.Random(1))
    assert [steady.next_delay_s() for _ in range(3)] == [1.0, 2.0, 4.0]
