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

from streamer.events import new_ulid
from streamer.messages import EndOfStream, Event
from streamer.queues import Overflow, StageQueue
from streamer.runtime import Supervisor
from streamer.sink import RedisSink, connect
from streamer.spool import DiskSpool, MemorySpool, Spool
from streamer.stats import RunStats
from tools.local_redis import RedisServer

BOX = {"track_id": None, "label": "person", "class_id": 0, "confidence": 0.91,
       "bbox": [412.0, 80.5, 530.2, 161.0]}  # fmt: skip


def make_events(n: int) -> list[Event]:
    now_ns = time.monotonic_ns()
    return [Event("cam1", "detections", payload(i), now_ns) for i in range(1, n + 1)]


def payload(seq: int) -> dict[str, Any]:
    return {
        "schema": 1, "id": new_ulid(), "run": "bench", "seq": seq, "type": "detections",
        "pipeline": "bench", "source": "cam1",
        "frame": {"index": seq - 1, "pts": seq / 25, "captured_at": 1764322345.123},
        "emitted_at": 1764322345.301, "objects": [BOX, BOX, BOX],
        "zone": None, "line": None, "direction": None,
    }  # fmt: skip


def deliver(url: str, events: list[Event], spool: Spool) -> float:
    """Events per second through one sink, from the first put to the last delivery."""
    client = connect(url)
    client.flushdb()
    inbox: StageQueue[Event] = StageQueue("events", 4096, Overflow.BLOCK, lambda i, r: None)
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
    inbox.put_control(EndOfStream("cam1", "eof"))
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
