"""Reading events back from Redis Streams, with plain XREAD or with consumer groups."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from streamer.errors import StreamerError

BLOCK_MS = 1000


@dataclass(frozen=True)
class StreamEntry:
    """One stream entry: its Redis id and the event JSON it carries."""

    entry_id: str
    event: dict[str, Any]


def _decode(entry_id: bytes | str, fields: dict[Any, Any]) -> StreamEntry:
    def text(value: bytes | str) -> str:
        return value.decode() if isinstance(value, bytes) else value

    raw = {text(k): text(v) for k, v in fields.items()}
    if "event" not in raw:
        raise StreamerError(f"stream entry {text(entry_id)} has no 'event' field")
    return StreamEntry(text(entry_id), json.loads(raw["event"]))


def find_streams(client: redis.Redis) -> list[str]:
    """Stream keys that look like streamer's default ones."""
    keys = [k.decode() if isinstance(k, bytes) else k for k in client.scan_iter("streamer:*")]
    return sorted(k for k in keys if client.type(k) in (b"stream", "stream"))


def tail(
    client: redis.Redis, stream: str, count: int | None, follow: bool
) -> Iterator[StreamEntry]:
    """The last `count` entries (all when None), then, with `follow`, new ones as they come."""
    backlog: Any  # redis-py's reply types are too loose to check
    if count is None:
        backlog = client.xrange(stream)
    else:
        newest_first: Any = client.xrevrange(stream, count=count) if count > 0 else []
        backlog = list(reversed(newest_first))
    last_id: Any = "0-0"
    for entry_id, fields in backlog:
        yield _decode(entry_id, fields)
        last_id = entry_id
    if not follow:
        return
    if not backlog:
        last_id = "$"
    while True:
        reply: Any = client.xread({stream: last_id}, block=BLOCK_MS, count=100)
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                yield _decode(entry_id, fields)
                last_id = entry_id


def read_group(
    client: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    count: int | None,
    follow: bool,
) -> Iterator[StreamEntry]:
    """New entries for `group` (created at the start of the stream if missing); each is
    acknowledged once the caller has taken it and asks for the next one."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    taken = 0
    while count is None or taken < count:
        want = 100 if count is None else min(100, count - taken)
        reply: Any = client.xreadgroup(
            group, consumer, {stream: ">"}, count=want, block=BLOCK_MS if follow else None
        )
        entries = [e for _key, batch in reply or [] for e in batch]
        if not entries and not follow:
            return
        for entry_id, fields in entries:
            yield _decode(entry_id, fields)
            client.xack(stream, group, entry_id)
            taken += 1
