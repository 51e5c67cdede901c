"""Events per second the Redis sink delivers to a local redis-server, with the spool in
memory (the default) and in a file, side by side.

A producer thread puts `detections` events (three boxes each, about 600 bytes of JSON)
into the events queue as fast as it can, as postprocessing would; the figure is events
delivered per second of wall time, from the first put until the sink has delivered all.

    python -m benchmarks.sink [--events 100000] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from streamer.client.connection import connect
from streamer.events.event import Event, EventType, FrameRef, TrackedObject
from streamer.events.factory import new_ulid
from streamer.runtime.messages import Emitted, EndOfStream, EndReason
from streamer.runtime.queues import Overflow, StageQueue
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Supervisor
from streamer.sinks.redis_streams import RedisSink
from streamer.sinks.spool import DiskSpool, MemorySpool, Spool
from tools.local_redis import RedisServer

BOX = TrackedObject(None, "person", 0, 0.91, (412.0, 80.5, 530.2, 161.0))


def make_events(n: int) -> list[Emitted]:
    now_ns = time.monotonic_ns()
    return [Emitted.of(event(i), now_ns) for i in range(1, n + 1)]


def event(seq: int) -> Event:
    return Event(
        id=new_ulid(), run="bench", seq=seq, type=EventType.DETECTIONS, pipeline="bench",
        source="cam1", frame=FrameRef(seq - 1, seq / 25, 1764322345.123),
        emitted_at=1764322345.301, objects=(BOX, BOX, BOX),
    )  # fmt: skip


def deliver(url: str, events: list[Emitted], spool: Spool) -> float:
    """Events per second through one sink, from the first put to the last delivery."""
    client = connect(url)
    client.flushdb()
    inbox: StageQueue[Emitted] = StageQueue("events", 4096, Overflow.BLOCK, lambda i, r: None)
    stats = RunStats(["cam1"])
    sink = RedisSink(
        client, "bench:{source}", "bench", len(events), spool, inbox, ["cam1"], stats, Supervisor()
    )
    thread = threading.Thread(target=sink.run)
    never = threading.Event()
    started = time.perf_counter()
    thread.start()
    for event in events:
        inbox.put(event, never)
    inbox.put_control(EndOfStream("cam1", EndReason.EOF))
    thread.join()
    elapsed = time.perf_counter() - started
    delivered = stats.snapshot()["events"]["delivered"]
    if delivered != len(events) or client.xlen("bench:cam1") != len(events):
        raise RuntimeError(f"delivered {delivered} of {len(events)} events")
    client.close()
    return len(events) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    events = make_events(args.events)
    rates: dict[str, list[float]] = {"memory": [], "disk": []}
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        for round_ in range(args.rounds):  # alternated, so both see the same machine
            rates["memory"].append(deliver(server.url, events, MemorySpool(100_000)))
            spool = DiskSpool(Path(tmp) / f"spool-{round_}.db", 100_000)
            rates["disk"].append(deliver(server.url, events, spool))
    result: dict[str, Any] = {k: round(statistics.median(v)) for k, v in rates.items()}
    result["disk_vs_memory"] = round(result["disk"] / result["memory"], 3)
    print(f"{args.events} events, median of {args.rounds} rounds, Redis up:")
    print(f"  spool in memory: {result['memory']:>8,} events/s")
    print(f"  spool in a file: {result['disk']:>8,} events/s  ({result['disk_vs_memory']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
