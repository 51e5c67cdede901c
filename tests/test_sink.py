"""The Redis sink against a real redis-server: order, fields, trimming, an outage, and loss."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from streamer.messages import EndOfStream, Event
from streamer.queues import Overflow, StageQueue
from streamer.runtime import Supervisor
from streamer.sink import RedisSink, connect
from streamer.stats import RunStats
from tools.local_redis import RedisServer

pytestmark = pytest.mark.integration


def event(seq: int, source: str = "cam1") -> Event:
    payload = {"seq": seq, "source": source, "type": "detections"}
    return Event(source, "detections", payload, time.monotonic_ns())


def start_sink(url: str, maxlen: int = 100_000, template: str = "s:{pipeline}:{source}"):
    inbox: StageQueue[Event] = StageQueue("events", 100_000, Overflow.BLOCK, lambda i, r: None)
    stats = RunStats(["cam1"])
    supervisor = Supervisor()
    sink = RedisSink(connect(url), template, "p", maxlen, inbox, ["cam1"], stats, supervisor)
    thread = threading.Thread(target=sink.run)
    thread.start()
    return inbox, stats, supervisor, thread


def seqs(client: redis.Redis, key: str) -> list[int]:
    return [json.loads(f[b"event"])["seq"] for _id, f in client.xrange(key)]


def test_events_arrive_in_order_with_their_fields(redis_server, redis_client):
    inbox, stats, _, thread = start_sink(redis_server.url)
    stop = threading.Event()
    for i in range(1, 2001):
        inbox.put(event(i), stop)
    inbox.put_control(EndOfStream("cam1", "eof"))
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert seqs(redis_client, "s:p:cam1") == list(range(1, 2001))
    _id, fields = redis_client.xrange("s:p:cam1", count=1)[0]
    assert fields[b"type"] == b"detections" and fields[b"source"] == b"cam1"
    assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 2000, "lost": 0}


def test_the_stream_is_trimmed_to_about_maxlen(redis_server, redis_client):
    inbox, _, _, thread = start_sink(redis_server.url, maxlen=50)
    stop = threading.Event()
    for i in range(1, 1001):
        inbox.put(event(i), stop)
    inbox.put_control(EndOfStream("cam1", "eof"))
    thread.join(timeout=30)
    length = redis_client.xlen("s:p:cam1")
    assert 50 <= length < 300  # MAXLEN ~ trims whole macro nodes (100 entries by default)
    assert seqs(redis_client, "s:p:cam1")[-1] == 1000


def test_events_wait_while_redis_is_away_and_arrive_in_order_after(tmp_path):
    server = RedisServer(tmp_path / "r").start()
    try:
        inbox, stats, _, thread = start_sink(server.url)
        stop = threading.Event()
        for i in range(1, 101):
            inbox.put(event(i), stop)
        deadline = time.monotonic() + 10
        while stats.snapshot()["events"]["delivered"] < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()  # Redis goes away; its data with it (no persistence here)
        for i in range(101, 301):
            inbox.put(event(i), stop)
        time.sleep(0.5)
        assert stats.snapshot()["events"]["delivered"] == 100
        server.start()  # back on the same port
        inbox.put_control(EndOfStream("cam1", "eof"))
        thread.join(timeout=30)
        assert not thread.is_alive()
        client = redis.Redis.from_url(server.url)
        assert seqs(client, "s:p:cam1") == list(range(101, 301))
        client.close()
        assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 300, "lost": 0}
    finally:
        server.stop()


def test_what_cannot_be_delivered_when_halted_is_counted_as_lost(tmp_path):
    server = RedisServer(tmp_path / "r").start()
    inbox, stats, supervisor, thread = start_sink(server.url)
    server.stop()
    stop = threading.Event()
    for i in range(1, 11):
        inbox.put(event(i), stop)
    time.sleep(0.3)
    supervisor.halt.set()
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 0, "lost": 10}
