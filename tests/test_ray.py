"""Shards as actors on a real local Ray cluster of three nodes: a node is lost, its shards
move to a node that is alive, and their cameras go on with the same run and seq."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.config import load_config
from streamer.shards.supervisor import ShardedPipeline
from tests.conftest import (
    DEMO_CONFIDENCE,
    assert_seq_whole,
    by_source,
    quick_events,
    read_events,
    sources_pipeline,
    wait_until,
)
from tests.test_shards import CAMERAS
from tools.rtsp import RtspServer

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


@pytest.fixture
def three_nodes() -> Iterator[Any]:
    """A head node that runs no shard (0 CPUs) and two worker nodes of one CPU each.
    Heartbeats every second, so that a lost node is declared dead within 3 s."""
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": 80 * 1024 * 1024,
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
        },
    )
    try:
        for _ in range(2):
            cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def four_cameras(demo_camera_clip: Path) -> Iterator[RtspServer]:
    with RtspServer(dict.fromkeys(CAMERAS, demo_camera_clip)) as server:
        yield server


def test_a_lost_node_moves_its_shards_and_their_cameras_resume_within_20_s(
    tmp_path, redis_client, redis_server, four_cameras, demo_model, three_nodes
):
    urls = {sid: four_cameras.url(sid) for sid in CAMERAS}
    extra = (
        DEMO_CONFIDENCE
        + f"workers: 2\nray: {{address: '{three_nodes.address}', cpus_per_shard: 0.5}}\n"
    )
    path = sources_pipeline(tmp_path, "farm", urls, demo_model, extra)
    stream = "streamer:farm:events"
    pipeline = ShardedPipeline.from_config(load_config(path), redis_url=redis_server.url)
    with pipeline:
        pipeline.start()

        def detections_of(sources: list[str]) -> list[dict[str, Any]]:
            return [e for e in quick_events(redis_client, stream)
                    if e["source"] in sources and e["type"] == "detections"]  # fmt: skip

        wait_until(lambda: {e["source"] for e in detections_of(list(CAMERAS))} == set(CAMERAS),
                   90, "events from every camera")  # fmt: skip
        shards = pipeline.stats()["shards"]
        assert all(s["node"] for s in shards.values()), shards
        lost_node = next(
            n for n in three_nodes.worker_nodes if n.node_id == shards["shard-0"]["node"]
        )
        moved = [name for name, s in shards.items() if s["node"] == lost_node.node_id]
        cameras = [sid for name in moved for sid in shards[name]["sources"]]
        three_nodes.remove_node(lost_node, allow_graceful=False)
        lost_at = time.time()

        def restarted() -> bool:
            return all(pipeline.stats()["shards"][name]["restarts"] == 1 for name in moved)

        def resumed() -> list[dict[str, Any]]:
            """The moved cameras' detections made by their new shard: after it said it
            replaced the dead one (the dead shard's process may go on for a moment after
            its node is gone, and what it sends then is no resumption)."""
            events = [e for e in quick_events(redis_client, stream) if e["source"] in cameras]
            said = [i for i, e in enumerate(events) if "restarted" in (e.get("detail") or "")]
            if len(said) < len(cameras):
                return []
            return [e for e in events[max(said) + 1 :] if e["type"] == "detections"]

        wait_until(restarted, 20, "the lost node's shards to be restarted")
        wait_until(lambda: len(resumed()) > 15, 20, "the moved cameras to resume")
        resumed_s = min(e["emitted_at"] for e in resumed()) - lost_at
        time.sleep(2)
        pipeline.stop()
        stats = pipeline.stats()

    assert resumed_s <= 20, resumed_s
    for name in moved:
        assert stats["shards"][name]["restarts"] == 1
    events = by_source(read_events(redis_client, stream))
    for sid in CAMERAS:
        assert_seq_whole(events[sid])
        assert events[sid][-1].get("status") == "ended", (sid, events[sid][-3:], stats)
    for sid in cameras:
        statuses = [e["status"] for e in events[sid] if e["type"] == "source_status"]
        assert statuses == ["connected", "disconnected", "connected", "ended"], statuses
