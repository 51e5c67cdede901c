"""Reading events back from Redis Streams as typed objects (DESIGN.md section 6).

`Consumer` reads a stream with plain XREAD, or as a member of a consumer group: it creates
the group when missing, first re-delivers the entries this consumer name read and did not
acknowledge (so a restarted consumer resumes), acknowledges with XACK, and takes over
entries left pending by consumers that died with XAUTOCLAIM.

Entries trimmed by MAXLEN while pending come back without fields; they are skipped and
acknowledged, so they do not stay pending forever.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import redis

from streamer.errors import StreamerError
from streamer.urls import redact

BLOCK_MS = 1000  # how long one read waits for new entries while following
BATCH = 100  # entries per read
SOCKET_TIMEOUT_S = 10.0  # longer than BLOCK_MS, or every blocking read would time out


@dataclass(frozen=True, slots=True)
class FrameRef:
    """The frame an event comes from."""

    index: int  # 0-based position among the frames decoded from this source in this run
    pts: float | None
    captured_at: float


@dataclass(frozen=True, slots=True)
class TrackedObject:
    """One object of an event. `first_seen`, `last_seen` and `dwell_s` are None when the
    event does not carry them; `object_left` always does."""

    track_id: int | None
    label: str
    class_id: int
    confidence: float
    bbox: tuple[float, float, float, float]  # source pixels, x1, y1, x2, y2
    first_seen: float | None = None
    last_seen: float | None = None
    dwell_s: float | None = None

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> TrackedObject:
        x1, y1, x2, y2 = o["bbox"]
        return cls(
            o["track_id"],
            o["label"],
            o["class_id"],
            o["confidence"],
            (x1, y1, x2, y2),
            o.get("first_seen"),
            o.get("last_seen"),
            o.get("dwell_s"),
        )


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of the contract, with the id of the stream entry that carried it.

    Keys this version does not know are ignored here and kept in `raw`.
    """

    entry_id: str
    schema: int
    id: str
    run: str
    seq: int
    type: str
    pipeline: str
    source: str
    frame: FrameRef | None
    emitted_at: float
    object: TrackedObject | None  # None on `detections` and `source_status`
    objects: tuple[TrackedObject, ...]  # on `detections` only
    zone: str | None
    line: str | None
    direction: str | None  # "in" or "out" on `line_crossed`
    status: str | None  # on `source_status`
    detail: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, entry_id: str, e: dict[str, Any]) -> StreamEvent:
        frame, obj = e.get("frame"), e.get("object")
        return cls(
            entry_id=entry_id,
            schema=e["schema"],
            id=e["id"],
            run=e["run"],
            seq=e["seq"],
            type=e["type"],
            pipeline=e["pipeline"],
            source=e["source"],
            frame=None
            if frame is None
            else FrameRef(frame["index"], frame["pts"], frame["captured_at"]),
            emitted_at=e["emitted_at"],
            object=None if obj is None else TrackedObject.from_json(obj),
            objects=tuple(TrackedObject.from_json(o) for o in e.get("objects", ())),
            zone=e.get("zone"),
            line=e.get("line"),
            direction=e.get("direction"),
            status=e.get("status"),
            detail=e.get("detail"),
            raw=e,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_entry(entry_id: bytes | str, fields: dict[Any, Any]) -> StreamEvent:
    """The event in one stream entry; StreamerError naming the entry when it holds none."""
    entry_id = _text(entry_id)
    event = fields.get(b"event", fields.get("event"))
    if event is None:
        raise StreamerError(f"stream entry {entry_id} has no 'event' field")
    try:
        return StreamEvent.from_json(entry_id, json.loads(event))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StreamerError(f"stream entry {entry_id} is not a streamer event: {exc!r}") from None


def connection_failure(url: str, exc: Exception) -> str:
    """One line for a Redis that could not be used at `url`, without its password."""
    # A wrong password is no network problem: say which (redis-py's message has no secret).
    what = "refused the login" if isinstance(exc, redis.AuthenticationError) else "unreachable"
    return f"{redact(url)}: Redis {what} ({redact(str(exc))})"


def connect(url: str) -> redis.Redis:
    """A client for `url`, checked with PING; StreamerError naming the URL when unreachable."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise StreamerError(connection_failure(url, exc)) from None
    return client


def find_streams(client: redis.Redis) -> list[str]:
    """Stream keys that look like streamer's default ones."""
    keys = [_text(k) for k in client.scan_iter("streamer:*")]
    return sorted(k for k in keys if client.type(k) in (b"stream", "stream"))


class Consumer:
    """Events of one stream, read plainly or as `name` in consumer group `group`.

    `start`: without a group, an entry id to read after ("0": the whole stream; "$": only
    entries added after this consumer was made) or an int N: the last N entries, then new
    ones. With a group, the id the group starts at when it has to be created ("0" or "$").
    `auto_ack`: acknowledge an event when the caller asks for the next one.
    """

    def __init__(
        self,
        client: redis.Redis,
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
    ) -> Iterator[StreamEvent]:
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
                if not fields:
                    self._drop_trimmed(entry_id)
                    continue
                event = parse_entry(entry_id, fields)
                yield event
                if self.auto_ack:
                    self.ack(event)
                taken += 1

    def ack(self, *events: StreamEvent) -> int:
        """Acknowledge `events` in the group; how many were still pending."""
        group, _name = self._member()
        if not events:
            return 0
        return int(self.client.xack(self.stream, group, *(e.entry_id for e in events)))

    def claim_stale(self, min_idle_ms: int, limit: int | None = None) -> list[StreamEvent]:
        """Take over entries of the group pending for longer than `min_idle_ms`, at most
        `limit`: those of consumers that died. This consumer's own unacknowledged entries
        are taken too once that idle, so `min_idle_ms` must be longer than handling one."""
        events = []
        for entry_id, fields in self._claim(min_idle_ms, limit):
            if fields:
                events.append(parse_entry(entry_id, fields))
            else:
                self._drop_trimmed(entry_id)
        return events

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

    def _drop_trimmed(self, entry_id: bytes | str) -> None:
        """Acknowledge an entry trimmed away while pending: it can never be handled."""
        self.client.xack(self.stream, self._member()[0], entry_id)
