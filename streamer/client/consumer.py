"""Reading events back from Redis Streams as typed objects (DESIGN.md section 6).

`Consumer` reads a stream with plain XREAD, or as a member of a consumer group: it creates
the group when missing, first re-delivers the entries this consumer name read and did not
acknowledge (so a restarted consumer resumes), acknowledges with XACK, and takes over
entries left pending by consumers that died with XAUTOCLAIM.

Entries trimmed by MAXLEN while pending come back without fields, and events of a type
this version does not know may come from a newer writer: both are skipped, and acknowledged
in a group so that they do not stay pending forever.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from streamer.client.connection import RedisClient, connect
from streamer.errors import StreamerError
from streamer.events.event import Event, UnknownEventType

log = logging.getLogger(__name__)

BLOCK_MS = 1000  # how long one read waits for new entries while following
BATCH = 100  # entries per read


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_entry(entry_id: bytes | str, fields: dict[Any, Any], stream: str | None = None) -> Event:
    """The event in one stream entry; StreamerError naming the entry when it holds none,
    UnknownEventType for an event of a type this version does not know."""
    entry_id = _text(entry_id)
    event = fields.get(b"event", fields.get("event"))
    if event is None:
        raise StreamerError(f"stream entry {entry_id} has no 'event' field")
    try:
        return Event.from_dict(json.loads(event), entry_id, stream)
    except UnknownEventType:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StreamerError(f"stream entry {entry_id} is not a streamer event: {exc!r}") from None


def find_streams(client: RedisClient, pattern: str = "streamer:*") -> list[str]:
    """The stream keys matching `pattern` (a glob: `*`, `?`, `[...]`), sorted; on a Redis
    Cluster, on every master."""
    keys = {_text(k) for k in client.scan_iter(match=pattern, _type="stream")}
    return sorted(keys)


class Consumer:
    """Events of one stream, read plainly or as `name` in consumer group `group`.

    `start`: without a group, an entry id to read after ("0": the whole stream; "$": only
    entries added after this consumer was made) or an int N: the last N entries, then new
    ones. With a group, the id the group starts at when it has to be created ("0" or "$").
    `auto_ack`: acknowledge an event when the caller asks for the next one.
    """

    def __init__(
        self,
        client: RedisClient,
        stream: str,
        group: str | None = None,
        name: str | None = None,
        *,
        start: str | int = "0",
        auto_ack: bool = False,
    ) -> None:
        if group is not None and (name is None or isinstance(start, int)):
            raise ValueError("a consumer group needs a consumer name and a start id, not a count")
        if group is None and auto_ack:
            raise ValueError("auto_ack needs a consumer group")
        if isinstance(start, int) and start < 0:
            raise ValueError(f"start must be an entry id or a count >= 0, got {start}")
        self.client = client
        self.stream = stream
        self.group = group
        self.name = name
        self.auto_ack = auto_ack
        self._own_pending_after: str | None = "0"  # group reads: None once re-delivered
        self._claimed_at = float("-inf")
        if group is None:
            self._after = self._position(start)  # plain reads: the id of the last entry read
            return
        try:
            client.xgroup_create(stream, group, id=str(start), mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @classmethod
    def connect(
        cls,
        url: str,
        stream: str,
        group: str | None = None,
        name: str | None = None,
        *,
        start: str | int = "0",
        auto_ack: bool = False,
    ) -> Consumer:
        """A consumer on a new client for `url`; StreamerError when Redis is unreachable."""
        return cls(connect(url), stream, group, name, start=start, auto_ack=auto_ack)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def events(
        self, *, follow: bool = False, limit: int | None = None, claim_idle_ms: int | None = None
    ) -> Iterator[Event]:
        """Events until caught up, or for ever with `follow`; at most `limit` of them.

        With a group, `claim_idle_ms` also takes over entries pending longer than that, at
        most once per that period (see `claim_stale`).
        """
        taken = 0
        while limit is None or taken < limit:
            # No more than `limit` are read: a group would otherwise hold the rest pending.
            want = BATCH if limit is None else min(BATCH, limit - taken)
            entries = self._next(want, follow, claim_idle_ms)
            if entries is None:
                return
            for entry_id, fields in entries:
                event = self._event(entry_id, fields)
                if event is None:
                    continue
                yield event
                if self.auto_ack:
                    self.ack(event)
                taken += 1

    def ack(self, *events: Event) -> int:
        """Acknowledge `events` in the group; how many were still pending."""
        group, _name = self._member()
        ids = [e.entry_id for e in events if e.entry_id is not None]
        if len(ids) < len(events):
            raise ValueError("only events read from the stream can be acknowledged")
        if not ids:
            return 0
        return int(self.client.xack(self.stream, group, *ids))

    def snapshot(self, event: Event) -> bytes | None:
        """The JPEG an event names in `snapshot` (`events.snapshots`): from its Redis key,
        or its file for a pipeline that stores them on disk (on this machine); None when
        the event has none, or it expired."""
        if event.snapshot is None:
            return None
        if event.snapshot.startswith("/"):
            try:
                return Path(event.snapshot).read_bytes()
            except FileNotFoundError:
                return None
        data = self.client.get(event.snapshot)
        if isinstance(data, str):
            raise TypeError("this client decodes replies as text; a picture needs its bytes")
        return data

    def claim_stale(self, min_idle_ms: int, limit: int | None = None) -> list[Event]:
        """Take over entries of the group pending for longer than `min_idle_ms`, at most
        `limit`: those of consumers that died. This consumer's own unacknowledged entries
        are taken too once that idle, so `min_idle_ms` must be longer than handling one."""
        events = []
        for entry_id, fields in self._claim(min_idle_ms, limit):
            event = self._event(entry_id, fields)
            if event is not None:
                events.append(event)
        return events

    def _event(self, entry_id: bytes | str, fields: dict[Any, Any]) -> Event | None:
        """The entry's event; None, and acknowledged in a group, for an entry that can never
        be handled here: trimmed away while pending, or of an event type this version does
        not know (event types are additive: consumers ignore the ones they do not know)."""
        if fields:
            try:
                return parse_entry(entry_id, fields, self.stream)
            except UnknownEventType as exc:
                log.debug("skipping stream entry %s: %s", _text(entry_id), exc)
        if self.group is not None:
            self.client.xack(self.stream, self.group, entry_id)
        return None

    def _next(self, count: int, follow: bool, claim_idle_ms: int | None) -> list[Any] | None:
        """The next entries as (id, fields) pairs; None once caught up, unless following."""
        if self.group is None:
            return self._read_plain(count, follow)
        if self._own_pending_after is not None:
            # An explicit id instead of ">" reads this consumer's own pending entries.
            entries = self._read_group(self._own_pending_after, count, block_ms=None)
            if entries:
                self._own_pending_after = _text(entries[-1][0])
                return entries
            self._own_pending_after = None
        if (
            claim_idle_ms is not None
            and time.monotonic() - self._claimed_at >= claim_idle_ms / 1000
        ):
            self._claimed_at = time.monotonic()
            claimed = self._claim(claim_idle_ms, count)
            if claimed:
                return claimed
        entries = self._read_group(">", count, block_ms=BLOCK_MS if follow else None)
        return entries if entries or follow else None

    def _position(self, start: str | int) -> str:
        """The entry id to read after, fixed now: "$" would move on between two reads and
        miss what was added in between."""
        if isinstance(start, str) and start != "$":
            return start
        last = 0 if start == "$" else int(start)
        newest: Any = self.client.xrevrange(self.stream, count=last + 1)
        return _text(newest[last][0]) if len(newest) > last else "0-0"

    def _read_plain(self, count: int, follow: bool) -> list[Any] | None:
        reply: Any = self.client.xread(
            {self.stream: self._after}, count=count, block=BLOCK_MS if follow else None
        )
        entries = [e for _key, batch in reply or [] for e in batch]
        if entries:
            self._after = _text(entries[-1][0])
        return entries if entries or follow else None

    def _member(self) -> tuple[str, str]:
        if self.group is None or self.name is None:
            raise ValueError("acknowledging and claiming need a consumer group")
        return self.group, self.name

    def _read_group(self, after: str, count: int, block_ms: int | None) -> list[Any]:
        group, name = self._member()
        reply: Any = self.client.xreadgroup(
            group, name, {self.stream: after}, count=count, block=block_ms
        )
        return [e for _key, batch in reply or [] for e in batch]

    def _claim(self, min_idle_ms: int, limit: int | None) -> list[Any]:
        group, name = self._member()
        claimed: list[Any] = []
        cursor = "0-0"
        while limit is None or len(claimed) < limit:
            want = BATCH if limit is None else min(BATCH, limit - len(claimed))
            reply: Any = self.client.xautoclaim(
                self.stream, group, name, min_idle_ms, start_id=cursor, count=want
            )
            # Redis >= 7 drops trimmed entries from the group itself and lists them apart
            # (reply[2]); older versions return them here without fields.
            claimed.extend(reply[1])
            cursor = _text(reply[0])
            if cursor == "0-0":
                break
        return claimed
