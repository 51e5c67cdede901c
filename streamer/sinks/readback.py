"""What a run already wrote: the last `seq` of each source, read back from its streams.

A shard restarted by its supervisor keeps the pipeline's run and goes on after the last
event each of its sources delivered, so that a consumer sees no gap and no duplicate.
The streams are read newest first, back to the run's start (its id is a ULID: the time
it began), until an event of the run is found for each source; events still held in the
spool file (not yet in Redis) count too, since the restarted sink delivers them first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from streamer.client.connection import RedisClient
from streamer.events.factory import ulid_ms
from streamer.sinks.spool import Pending

PAGE = 500  # entries per XREVRANGE


def last_seqs(
    client: RedisClient, keys: Mapping[str, str], run_id: str, held: Iterable[Pending] = ()
) -> dict[str, int]:
    """Per source (of `keys`: source id -> its stream key), the highest seq of `run_id`
    in its stream or in `held`; 0 for a source with none."""
    found = dict.fromkeys(keys, 0)
    wanted: dict[str, set[str]] = defaultdict(set)
    for sid, key in keys.items():
        wanted[key].add(sid)
    oldest = f"{ulid_ms(run_id)}-0"
    for key, sources in wanted.items():
        _scan(client, key, oldest, run_id, set(sources), found)
    for pending in held:
        event = orjson.loads(pending.fields["event"])
        sid = event.get("source")
        if sid in found and event.get("run") == run_id:
            found[sid] = max(found[sid], int(event["seq"]))
    return found


def stream_event_ids(client: RedisClient, key: str, since_ms: int) -> set[str]:
    """The ids of the events in stream `key` added from `since_ms` (epoch ms) on."""
    ids: set[str] = set()
    oldest = f"{max(0, since_ms)}-0"
    newest = "+"
    while True:
        entries: Any = client.xrevrange(key, max=newest, min=oldest, count=PAGE)
        for _entry_id, fields in entries:
            raw = fields.get(b"event")
            if raw:
                ids.add(orjson.loads(raw).get("id"))
        if len(entries) < PAGE:
            return ids
        newest = "(" + entries[-1][0].decode()


def _scan(
    client: RedisClient, key: str, oldest: str, run_id: str, sources: set[str],
    found: dict[str, int],
) -> None:  # fmt: skip
    """Read `key` newest first down to `oldest`, until each of `sources` has its last seq."""
    newest = "+"
    while sources:
        entries: Any = client.xrevrange(key, max=newest, min=oldest, count=PAGE)
        for _entry_id, fields in entries:
            sid = fields.get(b"source", b"").decode()
            if sid not in sources:
                continue
            event = orjson.loads(fields[b"event"])
            if event.get("run") == run_id:
                found[sid] = int(event["seq"])
                sources.discard(sid)
        if len(entries) < PAGE:
            return
        newest = "(" + entries[-1][0].decode()
