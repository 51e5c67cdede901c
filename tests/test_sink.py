"""The Redis sink against a real redis-server: order, fields, trimming, an outage, and loss,
with the spool in memory and in a file."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamer.client.connection import connect
from streamer.errors import SinkError
from streamer.events.event import Event, EventType
from streamer.events.factory import new_ulid
from streamer.runtime.messages import Emitted, EndOfStream
from streamer.runtime.queues import Overflow, StageQueue
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Supervisor
from streamer.sinks.redis_streams import RedisSink, check_stream_keys, stream_fields
from streamer.sinks.spool import DiskSpool, MemorySpool, Pending, Spool, open_spool
from tools.local_redis import RedisServer, free_port

pytestmark = pytest.mark.integration


def event(seq: int, source: str = "cam1") -> Emitted:
    typed = Event(new_ulid(), new_ulid(), seq, EventType.DETECTIONS, "p", source, None, time.time())
    return Emitted.of(typed, time.monotonic_ns())


def start_sink(
    url: str,
    maxlen: int = 100_000,
    template: str = "s:{pipeline}:{source}",
    client: redis.Redis | None = None,
    spool: Spool | None = None,
):
    inbox: StageQueue[Emitted] = StageQueue("events", 100_000, Overflow.BLOCK, lambda i, r: None)
    stats = RunStats(["cam1"])
    supervisor = Supervisor()
    client = client or connect(url)
    spool = MemorySpool(100_000) if spool is None else spool
    sink = RedisSink(client, template, "p", maxlen, spool, inbox, ["cam1"], stats, supervisor)
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


def spool_in(where: str, folder: Path, max_events: int = 100_000) -> Spool:
    return open_spool(folder / "spool.db" if where == "disk" else None, max_events)


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_events_wait_while_redis_is_away_and_arrive_in_order_after(tmp_path, where):
    server = RedisServer(tmp_path / "r").start()
    try:
        inbox, stats, _, thread = start_sink(server.url, spool=spool_in(where, tmp_path))
        stop = threading.Event()
        for i in range(1, 101):
            inbox.put(event(i), stop)
        deadline = time.monotonic() + 10
        while stats.snapshot()["events"]["delivered"] < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()  # Redis goes away; its data with it (no persistence here)
        for i in range(101, 3001):  # more than one batch: the spool holds them all
            inbox.put(event(i), stop)
        time.sleep(0.5)
        assert stats.snapshot()["events"]["delivered"] == 100
        server.start()  # back on the same port
        inbox.put_control(EndOfStream("cam1", "eof"))
        thread.join(timeout=30)
        assert not thread.is_alive()
        client = redis.Redis.from_url(server.url)
        assert seqs(client, "s:p:cam1") == list(range(101, 3001))
        client.close()
        assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 3000, "lost": 0}
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


class ReplyEater:
    """A loopback TCP proxy to Redis that can swallow Redis's replies: the commands get
    through and are run, but the client never hears back (a timeout after the write)."""

    def __init__(self, port: int) -> None:
        self.swallow = threading.Event()
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._accept)]
        self._threads[0].start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(("127.0.0.1", self._target))
            for src, dst, eat in ((client, server, False), (server, client, True)):
                t = threading.Thread(target=self._pipe, args=(src, dst, eat))
                t.start()
                self._threads.append(t)

    def _pipe(self, src: socket.socket, dst: socket.socket, eat: bool) -> None:
        src.settimeout(0.1)
        while not self._closed.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if not (eat and self.swallow.is_set()):
                try:
                    dst.sendall(data)
                except OSError:
                    break
        for sock in (src, dst):
            sock.close()

    def close(self) -> None:
        self._closed.set()
        for t in self._threads:
            t.join(timeout=5)
        self._listener.close()


def test_a_batch_redis_wrote_but_never_confirmed_is_not_written_twice(redis_server, redis_client):
    proxy = ReplyEater(redis_server.port)
    try:
        via_proxy = f"redis://127.0.0.1:{proxy.port}/0"
        impatient = redis.Redis.from_url(via_proxy, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
        inbox, stats, _, thread = start_sink(via_proxy, client=impatient)
        stop = threading.Event()
        inbox.put(event(1), stop)  # connects, and is confirmed
        deadline = time.monotonic() + 10
        while stats.snapshot()["events"]["delivered"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy.swallow.set()  # Redis runs the next batch; its replies are lost on the way back
        for i in range(2, 51):
            inbox.put(event(i), stop)
        while redis_client.xlen("s:p:cam1") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.6)  # past the sink's socket timeout: it cannot know what was written
        assert redis_client.xlen("s:p:cam1") > 1
        assert stats.snapshot()["events"]["delivered"] == 1
        proxy.swallow.clear()
        inbox.put_control(EndOfStream("cam1", "eof"))
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert seqs(redis_client, "s:p:cam1") == list(range(1, 51))
        assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 50, "lost": 0}
    finally:
        proxy.close()


def test_a_key_that_is_not_a_stream_is_refused_at_start(redis_server, redis_client):
    redis_client.set("s:p:cam1", "a string")
    with pytest.raises(SinkError, match="key 's:p:cam1' holds a string, not a stream"):
        check_stream_keys(redis_client, ["s:p:cam1", "s:p:cam2"], redis_server.url)


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_a_full_spool_loses_the_oldest_and_never_stalls_the_pipeline(tmp_path, where, caplog):
    server = RedisServer(tmp_path / "r").start()
    spool = spool_in(where, tmp_path, max_events=10)
    inbox, stats, supervisor, thread = start_sink(server.url, spool=spool)
    server.stop()
    stop = threading.Event()
    inbox.put(event(1), stop)
    time.sleep(0.5)  # the sink has met the outage
    for i in range(2, 101):
        inbox.put(event(i), stop)
    deadline = time.monotonic() + 5
    while len(inbox) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(inbox) == 0  # taken in, not left to block the stages upstream
    assert stats.snapshot()["events"]["lost"] == 90
    assert "event spool full (10 events): losing the oldest ones" in caplog.text
    supervisor.halt.set()
    thread.join(timeout=15)
    if where == "memory":  # the newest 10 go with the process
        assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 0, "lost": 100}
    else:  # they stay in the file for the next run
        assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 0, "lost": 90}
        kept = DiskSpool(tmp_path / "spool.db", 10)
        assert [json.loads(p.fields["event"])["seq"] for p in kept.head(20)] == list(range(91, 101))
        kept.close()


def test_with_a_spool_file_what_a_halt_leaves_is_delivered_first_by_the_next_run(tmp_path, caplog):
    server = RedisServer(tmp_path / "r").start()
    try:
        inbox, stats, supervisor, thread = start_sink(server.url, spool=spool_in("disk", tmp_path))
        server.stop()
        stop = threading.Event()
        for i in range(1, 601):
            inbox.put(event(i), stop)
        time.sleep(0.3)
        supervisor.halt.set()
        thread.join(timeout=15)
        assert not thread.is_alive()
        # Not lost: kept in the file.
        assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 0, "lost": 0}
        assert "600 undelivered events stay in" in caplog.text

        server.start()
        spool = DiskSpool(tmp_path / "spool.db", 100_000)
        assert spool.recovered == 600
        inbox, stats, _, thread = start_sink(server.url, spool=spool)
        for i in range(1, 11):  # the next run: its own seq start again at 1
            inbox.put(event(i), stop)
        inbox.put_control(EndOfStream("cam1", "eof"))
        thread.join(timeout=30)
        assert not thread.is_alive()
        client = redis.Redis.from_url(server.url)
        assert seqs(client, "s:p:cam1") == list(range(1, 601)) + list(range(1, 11))
        client.close()
        assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 610, "lost": 0}
        left = DiskSpool(tmp_path / "spool.db", 10)
        assert len(left) == 0  # all delivered
        left.close()
    finally:
        server.stop()


@pytest.mark.parametrize("other_writer", [False, True], ids=["alone", "shared-stream"])
def test_a_batch_an_earlier_run_wrote_but_never_heard_back_about_is_not_written_twice(
    tmp_path, redis_server, redis_client, other_writer
):
    """The earlier run died between Redis writing its batch and the reply: the batch is
    both in Redis and at the head of the spool file. Another writer (another shard of the
    run) may have added entries to the stream since."""
    earlier = [event(i) for i in range(1, 11)]
    spool = DiskSpool(tmp_path / "spool.db", 100)
    spool.extend([Pending("s:p:cam1", e.event.id, stream_fields(e), None) for e in earlier])
    spool.close()
    for e in earlier[:4]:  # delivered and confirmed before (no longer spooled)...
        redis_client.xadd("s:p:cam1", stream_fields(e))  # type: ignore[arg-type]
    spool = DiskSpool(tmp_path / "spool.db", 100)
    spool.drop(4)
    for e in earlier[4:]:  # ...and the batch written without a reply
        redis_client.xadd("s:p:cam1", stream_fields(e))  # type: ignore[arg-type]
    if other_writer:
        redis_client.xadd("s:p:cam1", {"event": "{}", "type": "detections", "source": "cam2"})
    inbox, stats, _, thread = start_sink(redis_server.url, spool=spool)
    stop = threading.Event()
    inbox.put(event(11), stop)
    inbox.put_control(EndOfStream("cam1", "eof"))
    thread.join(timeout=30)
    assert not thread.is_alive()
    cam1 = [json.loads(f[b"event"]) for _, f in redis_client.xrange("s:p:cam1")
            if f[b"source"] == b"cam1"]  # fmt: skip
    assert [e["seq"] for e in cam1] == list(range(1, 12))
    assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 7, "lost": 0}


def limited_user_url(server: RedisServer, client: redis.Redis, scripting: bool) -> str:
    """The server's URL as a user allowed everything, or everything but scripts (the sink
    then writes its batches as MULTI/EXEC transactions)."""
    if scripting:
        return server.url
    client.acl_setuser(
        "noscripts", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-@scripting"]
    )
    return server.url.replace("redis://", "redis://noscripts:pw@")


@pytest.mark.parametrize("scripting", [True, False], ids=["script", "multi-exec"])
@pytest.mark.parametrize("refusal", ["out-of-memory", "read-only-replica"])
def test_a_redis_that_cannot_write_now_refuses_whole_batches_that_are_retried(
    tmp_path, refusal, scripting, caplog
):
    """OOM and READONLY refuse the whole batch before any event is written, whichever way
    it goes: held, retried, then delivered once each, in order, none counted lost."""
    with RedisServer(tmp_path / "redis") as server:
        admin = redis.Redis.from_url(server.url)
        url = limited_user_url(server, admin, scripting)
        if refusal == "out-of-memory":
            admin.config_set("maxmemory", 1)  # every write is refused, noeviction
        else:  # a replica of a master that never answers: read-only
            admin.replicaof("127.0.0.1", free_port())
        inbox, stats, _, thread = start_sink(url)
        stop = threading.Event()
        for i in range(1, 21):
            inbox.put(event(i), stop)
        time.sleep(1.0)  # several refused tries
        assert admin.xlen("s:p:cam1") == 0
        assert stats.snapshot()["events"]["delivered"] == 0
        if refusal == "out-of-memory":
            admin.config_set("maxmemory", 0)
        else:
            admin.replicaof("NO", "ONE")
        inbox.put_control(EndOfStream("cam1", "eof"))
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert seqs(admin, "s:p:cam1") == list(range(1, 21))
        assert stats.snapshot()["events"] == {"emitted": 0, "delivered": 20, "lost": 0}
        script_refused = [r for r in caplog.records if "batch script" in r.getMessage()]
        assert len(script_refused) == (0 if scripting else 1)
        admin.close()
