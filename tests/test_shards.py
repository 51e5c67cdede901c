"""Shards: a pipeline over several processes, with real cameras, Redis and kill -9."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.config import load_config
from streamer.shards.supervisor import ShardedPipeline
from tests.conftest import (
    DEMO_CONFIDENCE,
    DEMO_FRAMES,
    assert_seq_whole,
    by_source,
    quick_events,
    read_events,
    run_cli,
    run_with_stats,
    sources_pipeline,
    wait_until,
)
from tools.rtsp import RtspServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CAMERAS = ("cam1", "cam2", "cam3", "cam4")


@pytest.fixture
def four_cameras(demo_camera_clip: Path) -> Iterator[RtspServer]:
    with RtspServer(dict.fromkeys(CAMERAS, demo_camera_clip)) as server:
        yield server


def test_a_killed_shard_is_back_within_10_s_and_no_camera_sees_a_gap_in_seq(
    tmp_path, redis_client, redis_server, four_cameras, demo_model
):
    urls = {sid: four_cameras.url(sid) for sid in CAMERAS}
    path = sources_pipeline(tmp_path, "site", urls, demo_model,
                            DEMO_CONFIDENCE + "workers: 2\n")  # fmt: skip
    stream = "streamer:site:events"
    with ShardedPipeline.from_config(load_config(path), redis_url=redis_server.url) as pipeline:
        assert sorted(len(s) for s in pipeline.shards.values()) == [2, 2]
        victim, survivor = sorted(pipeline.shards)
        pipeline.start()

        def detections_of(sources: list[str]) -> list[dict[str, Any]]:
            return [e for e in quick_events(redis_client, stream)
                    if e["source"] in sources and e["type"] == "detections"]  # fmt: skip

        wait_until(lambda: {e["source"] for e in detections_of(list(CAMERAS))} == set(CAMERAS),
                   60, "events from every camera")  # fmt: skip
        time.sleep(2)
        pid = pipeline.shard_pid(victim)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        before = len(detections_of(pipeline.shards[victim]))
        wait_until(lambda: len(detections_of(pipeline.shards[victim])) > before + 15,
                   10, "the killed shard's cameras to resume")  # fmt: skip
        resumed_s = (
            min(e["emitted_at"] for e in detections_of(pipeline.shards[victim])[before:])
            - killed_at
        )
        time.sleep(2)
        pipeline.stop()
        stats = pipeline.stats()

    assert resumed_s <= 10, resumed_s
    assert stats["shards"][victim]["restarts"] == 1
    assert stats["shards"][survivor]["restarts"] == 0
    assert stats["shards"][victim]["pid"] != pid
    events = by_source(read_events(redis_client, stream))
    for sid in CAMERAS:
        assert_seq_whole(events[sid])
        assert events[sid][-1]["status"] == "ended"
    for sid in pipeline.shards[victim]:
        # The restarted shard says the camera was away, then connected again.
        statuses = [(e["status"], e["detail"]) for e in events[sid] if e["type"] == "source_status"]
        assert statuses[0][0] == "connected"
        assert statuses[1][0] == "disconnected" and "died" in statuses[1][1], statuses
        assert statuses[2][0] == "connected", statuses
    for sid in pipeline.shards[survivor]:
        # The other shard never paused: its cameras' events kept coming through the kill.
        times = [e["emitted_at"] for e in events[sid] if e["type"] == "detections"]
        assert times[0] < killed_at < times[-1]
        assert max(b - a for a, b in itertools.pairwise(times)) <= 1.0
        assert [e["status"] for e in events[sid] if e["type"] == "source_status"] == [
            "connected", "ended",
        ]  # fmt: skip


@pytest.mark.parametrize("spool", [False, True], ids=["memory-spool", "disk-spool"])
def test_events_a_killed_shard_had_not_delivered_are_counted_lost_or_recovered_from_its_spool(
    tmp_path, redis_client, redis_server, demo_camera_clip, demo_model, spool
):
    """Redis refuses writes (out of memory) while a shard is killed: the events it held
    die with it when its spool is in memory (counted lost), and are delivered by the
    restarted shard when the spool is a file. Either way the stream's seq has no gap and
    no duplicate."""
    urls = {"cam1": str(demo_camera_clip), "cam2": str(demo_camera_clip)}
    sink = f"sink:\n  redis:\n    spool_path: {tmp_path / 'site.spool'}\n" if spool else ""
    path = sources_pipeline(tmp_path, "held", urls, demo_model,
                            DEMO_CONFIDENCE + f"workers: 2\n{sink}")  # fmt: skip
    stream = "streamer:held:events"
    config = load_config(path)
    with ShardedPipeline.from_config(config, redis_url=redis_server.url, realtime=True) as pipeline:
        victim = next(name for name, sources in pipeline.shards.items() if "cam1" in sources)
        pipeline.start()
        wait_until(lambda: redis_client.xlen(stream) >= 20, 60, "first events")
        redis_client.config_set("maxmemory", "1")  # every write refused for now
        try:
            time.sleep(2)  # the shard makes events it cannot deliver (15 a second)
            pid = pipeline.shard_pid(victim)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        finally:
            redis_client.config_set("maxmemory", "0")
        wait_until(lambda: pipeline.shard_pid(victim) not in (None, pid), 10, "the restart")
        time.sleep(4)
        pipeline.stop()
        stats = pipeline.stats()
    events = by_source(read_events(redis_client, stream))
    for sid in urls:
        assert_seq_whole(events[sid])
    lost = stats["events"]["lost"]
    if spool:
        assert lost <= 2, stats["events"]  # at most what was between two threads at the kill
    else:
        assert lost >= 20, stats["events"]


def test_streamer_run_with_workers_sums_the_shards_in_one_stats_file(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    urls = {sid: str(demo_clip) for sid in CAMERAS}
    path = sources_pipeline(tmp_path, "files", urls, demo_model, DEMO_CONFIDENCE)
    frames = DEMO_FRAMES // 3
    result, stats = run_with_stats(path, redis_server.url, "--workers", "2",
                                   "--max-frames", str(frames))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stats["frames"]["decoded"] == stats["frames"]["processed"] == 4 * frames
    assert list(stats["sources"]) == list(CAMERAS)
    assert all(s["frames"] == frames for s in stats["sources"].values())
    assert stats["events"]["delivered"] == stats["events"]["emitted"] > 4 * frames
    shards = stats["shards"]
    assert sorted(shards) == ["shard-0", "shard-1"]
    assert sorted(sid for s in shards.values() for sid in s["sources"]) == sorted(CAMERAS)
    assert all(s["pid"] > 0 and s["host"] and s["restarts"] == 0 for s in shards.values())
    assert len({e["run"] for e in read_events(redis_client, "streamer:files:events")}) == 1
    for sid, mine in by_source(read_events(redis_client, "streamer:files:events")).items():
        assert_seq_whole(mine)
        assert len([e for e in mine if e["type"] == "detections"]) == frames, sid
    assert json.loads(json.dumps(stats)) == stats


def test_workers_need_redis(tmp_path, demo_clip, demo_model):
    path = sources_pipeline(tmp_path, "local", {"a": str(demo_clip), "b": str(demo_clip)},
                            demo_model, "workers: 2\nsink: none\n")  # fmt: skip
    result = run_cli("run", str(path))
    assert result.returncode == 2
    assert "workers" in result.stderr and "Traceback" not in result.stderr


def test_streamer_status_shows_which_shard_runs_which_camera_while_it_runs(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    urls = {sid: str(demo_clip) for sid in CAMERAS}
    path = sources_pipeline(tmp_path, "watched", urls, demo_model, DEMO_CONFIDENCE)
    command = [sys.executable, "-m", "streamer", "run", str(path), "--workers", "2",
               "--realtime", "--duration", "8", "--redis-url", redis_server.url]  # fmt: skip
    with subprocess.Popen(command, stderr=subprocess.DEVNULL) as run:
        try:

            def every_shard_started() -> bool:
                raw = redis_client.get("streamer:watched:status")
                shards = json.loads(raw)["shards"] if raw else {}
                return bool(shards) and all(s["host"] for s in shards.values())

            wait_until(every_shard_started, 60, "a status with every shard started")
            status = run_cli("status", str(path), "--redis-url", redis_server.url, "--json")
            table = run_cli("status", "watched", "--redis-url", redis_server.url)
            assert run.wait(timeout=60) == 0
        finally:
            run.kill()
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["pipeline"] == "watched" and doc["run"]
    placed = {sid: name for name, s in doc["shards"].items() for sid in s["sources"]}
    assert sorted(placed) == sorted(CAMERAS) and set(placed.values()) == {"shard-0", "shard-1"}
    assert all(s["pid"] > 0 and s["host"] for s in doc["shards"].values())
    assert table.returncode == 0
    assert table.stdout.splitlines()[1].split() == ["SHARD", "HOST", "PID", "RESTARTS", "SOURCES"]
    gone = run_cli("status", "nothing", "--redis-url", redis_server.url)
    assert gone.returncode == 1 and "no status" in gone.stderr
