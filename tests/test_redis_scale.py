"""Redis as large sites run it: a Redis Cluster of three masters and a Sentinel, with a
stream per camera and consumer groups that read every camera's stream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from streamer.client.streams import StreamsConsumer
from tests.conftest import (
    DEMO_CONFIDENCE,
    DEMO_FRAMES,
    assert_seq_whole,
    by_source,
    run_cli,
    run_with_stats,
    sources_pipeline,
)
from tools.redis_cluster import LocalCluster, LocalSentinel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CAMERAS = [f"cam{i}" for i in range(1, 7)]
PER_CAMERA = "sink:\n  redis:\n    stream: 'streamer:{pipeline}:{source}'\n"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def test_a_sharded_run_writes_a_stream_per_camera_over_the_cluster_and_a_group_reads_each_once(
    tmp_path, cluster, demo_clip, demo_model
):
    urls = dict.fromkeys(CAMERAS, str(demo_clip))
    path = sources_pipeline(tmp_path, "site", urls, demo_model, DEMO_CONFIDENCE + PER_CAMERA,
                            emit="[detections, object_appeared, object_left]")  # fmt: skip
    result, stats = run_with_stats(path, cluster.url, "--workers", "2", "--max-frames", "60")
    assert result.returncode == 0, result.stderr
    assert stats["frames"]["processed"] == len(CAMERAS) * 60
    assert stats["events"]["lost"] == 0
    emitted = stats["events"]["emitted"]
    assert stats["events"]["delivered"] == emitted

    client = redis.RedisCluster.from_url(cluster.url)
    keys = [f"streamer:site:{sid}" for sid in CAMERAS]
    masters = {client.get_node_from_key(key).port for key in keys}
    assert len(masters) >= 2, masters  # the cameras' streams are spread over the masters

    # Two consumers of one group share the work: every event is read once, by one of them.
    seen: list[tuple[str, str]] = []
    by_consumer = {}
    for name in ("a", "b"):
        reader = StreamsConsumer(client, "streamer:site:*", "counters", name, auto_ack=True)
        assert sorted(reader.streams) == sorted(keys)
        got = list(reader.events(limit=emitted // 2))
        by_consumer[name] = len(got)
        seen += [(e.stream or "", e.id) for e in got]
    rest = StreamsConsumer(client, "streamer:site:*", "counters", "a", auto_ack=True)
    seen += [(e.stream or "", e.id) for e in rest.events()]
    assert len(seen) == len(set(seen)) == emitted, (len(seen), emitted)
    assert all(n > 0 for n in by_consumer.values())
    for key in keys:
        assert client.xpending(key, "counters")["pending"] == 0

    plain = StreamsConsumer(client, keys)
    events = by_source([e.to_dict() for e in plain.events()])
    for sid in CAMERAS:
        assert_seq_whole(events[sid])
        assert sum(e["type"] == "detections" for e in events[sid]) == 60
    client.close()


def test_events_tail_follows_a_pattern_over_the_cluster(tmp_path, cluster, demo_clip, demo_model):
    path = sources_pipeline(tmp_path, "tail", {"north": str(demo_clip), "south": str(demo_clip)},
                            demo_model, DEMO_CONFIDENCE + PER_CAMERA)  # fmt: skip
    result, _ = run_with_stats(path, cluster.url, "--max-frames", "5")
    assert result.returncode == 0, result.stderr
    tail = run_cli("events", "tail", "--redis-url", cluster.url, "--stream", "streamer:tail:*")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == 2 * (5 + 2)  # per camera: 5 frames, connected and ended
    # "ID HH:MM:SS (video M:SS.S) SOURCE #SEQ TYPE ...": the source is before the seq.
    assert {line.split(" #")[0].split()[-1] for line in lines} == {"north", "south"}
    missing = run_cli("events", "tail", "--redis-url", cluster.url, "--stream", "nothing:*")
    assert missing.returncode == 2
    assert "no stream matches nothing:*" in missing.stderr


def test_a_run_through_a_sentinel_writes_to_its_master(tmp_path, demo_clip, demo_model):
    with LocalSentinel(tmp_path / "sentinel") as sentinel:
        path = sources_pipeline(tmp_path, "watched", {"cam1": str(demo_clip)}, demo_model,
                                DEMO_CONFIDENCE)  # fmt: skip
        result, stats = run_with_stats(path, sentinel.url)
        assert result.returncode == 0, result.stderr
        assert stats["events"]["delivered"] == DEMO_FRAMES + 2
        master = redis.Redis(port=sentinel.master.port)
        assert master.xlen("streamer:watched:events") == DEMO_FRAMES + 2
        master.close()
        wrong = sentinel.url.replace("/streamer/", "/nobody/")
        result, _ = run_with_stats(path, wrong)
        assert result.returncode == 2
        assert "nobody" in result.stderr and "Traceback" not in result.stderr


def test_a_sentinel_url_without_a_service_is_refused_in_one_line(tmp_path, demo_clip, demo_model):
    path = sources_pipeline(tmp_path, "bad", {"cam1": str(demo_clip)}, demo_model)
    result, _ = run_with_stats(path, "redis+sentinel://127.0.0.1:1")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("streamer: error")]
    assert errors == [
        "streamer: error: redis+sentinel://127.0.0.1:1: not a Redis URL this can use "
        "(no service name: redis+sentinel://HOST:PORT/SERVICE[/DB])"
    ]
    assert "Traceback" not in result.stderr
