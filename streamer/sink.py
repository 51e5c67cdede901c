"""The Redis Streams sink: events to `XADD key MAXLEN ~ N * event <json> type <t> source <s>`.

Events are written in pipelined batches. While Redis cannot be reached (or answers that
it cannot write for now: loading, read-only replica, out of memory), events wait in a
bounded in-memory spool and are retried with backoff, in order; only when the spool is
full is the oldest event dropped, and it is counted as lost and reported.

Delivery is at least once. Each batch is one MULTI/EXEC transaction. When its reply is
lost (a timeout, a connection cut), the next attempt first reads the last entry of each
stream and does not write again a batch Redis already has; an event can still be written
twice in rare cases (another writer on the same stream), and consumers that must not see
one twice dedupe on its `id`.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import deque
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamer.errors import SinkError
from streamer.messages import EndOfStream, Event
from streamer.queues import POLL_S, StageQueue
from streamer.runtime import Supervisor
from streamer.stats import RunStats
from streamer.urls import redact

log = logging.getLogger(__name__)

BATCH_SIZE = 512  # events per pipelined round trip
SPOOL_LIMIT = 100_000  # events held while Redis is away, before the oldest are lost
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 5.0
SOCKET_TIMEOUT_S = 5.0
FINAL_FLUSH_S = 2.0  # how long a halted sink still tries to deliver what it holds

# Replies that mean "not now" rather than "never": the batch is retried.
RETRYABLE = (
    redis.ConnectionError,  # includes BusyLoadingError
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
)
# Failures after which Redis may or may not have written part of the batch.
AMBIGUOUS = (redis.ConnectionError, redis.TimeoutError)


def connect(url: str) -> redis.Redis:
    """A client for `url`, checked with PING; SinkError naming the URL when unreachable."""
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            # No retries inside redis-py: re-sending a batch after a timeout could write
            # it twice. The sink retries itself, knowing what may have been written.
            retry=Retry(NoBackoff(), 0),
        )
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise SinkError(f"{redact(url)}: Redis unreachable ({redact(str(exc))})") from None
    return client


def check_stream_keys(client: redis.Redis, keys: list[str], url: str) -> None:
    """SinkError when one of `keys` exists and is not a stream (XADD would fail on it)."""
    for key in keys:
        kind: Any = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in ("none", "stream"):
            raise SinkError(f"{redact(url)}: key {key!r} holds a {kind}, not a stream")


def stream_fields(event: Event) -> dict[str, str]:
    return {
        "event": json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False),
        "type": event.type,
        "source": event.source_id,
    }


class RedisSink:
    def __init__(
        self,
        client: redis.Redis,
        stream_template: str,
        pipeline: str,
        maxlen: int,
        inbox: StageQueue[Event],
        source_ids: list[str],
        stats: RunStats,
        supervisor: Supervisor,
    ) -> None:
        self._client = client
        self._template = stream_template
        self._pipeline = pipeline
        self._maxlen = maxlen
        self._inbox = inbox
        self._source_ids = source_ids
        self._stats = stats
        self._supervisor = supervisor
        self._spool: deque[Event] = deque()
        self._unconfirmed = 0  # events at the head of the spool that Redis may have
        self._retry_s = RETRY_INITIAL_S
        self._outage_since: float | None = None
        self._lost_in_outage = 0

    def stream_key(self, source_id: str) -> str:
        return self._template.format(pipeline=self._pipeline, source=source_id)

    def run(self) -> None:
        remaining = set(self._source_ids)
        halt = self._supervisor.halt
        try:
            while not halt.is_set():
                remaining -= self._take(POLL_S if not self._spool else 0.0)
                if self._spool:
                    if not self._send():
                        halt.wait(self._retry_s)
                        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
                elif not remaining:
                    return
            # Halted: a last bounded try.
            self._take(0.0)
            give_up = time.monotonic() + FINAL_FLUSH_S
            while self._spool and time.monotonic() < give_up and self._send():
                self._take(0.0)
        finally:
            if self._spool:
                log.error(
                    "%d events could not be delivered to Redis and are lost", len(self._spool)
                )
                self._stats.events_lost(len(self._spool))
                self._spool.clear()

    def _take(self, timeout_s: float) -> set[str]:
        """Move queued events into the spool; the sources whose stream ended.

        Normally one batch at a time, so that a slow Redis slows the pipeline down
        rather than filling the spool; during an outage everything queued, so that the
        pipeline goes on and the spool, not the queue, holds the backlog.
        """
        ended: set[str] = set()
        in_outage = self._outage_since is not None
        item = self._inbox.get(timeout_s)
        while item is not None:
            if isinstance(item, EndOfStream):
                ended.add(item.source_id)
            elif isinstance(item, Event):
                if len(self._spool) >= SPOOL_LIMIT:
                    self._lose_oldest()
                self._spool.append(item)
            if not in_outage and len(self._spool) >= BATCH_SIZE:
                break
            item = self._inbox.get_nowait()
        return ended

    def _lose_oldest(self) -> None:
        if not self._lost_in_outage:
            log.error("event spool full (%d events): losing the oldest ones", SPOOL_LIMIT)
        self._spool.popleft()
        self._unconfirmed = max(0, self._unconfirmed - 1)
        self._lost_in_outage += 1
        self._stats.events_lost(1)

    def _send(self) -> bool:
        """Write up to BATCH_SIZE spooled events; False when Redis cannot take them now."""
        try:
            if self._unconfirmed:
                self._reconcile()
            batch = list(itertools.islice(self._spool, BATCH_SIZE))
            # MULTI/EXEC: Redis writes a batch whole or not at all (a reply such as OOM or
            # READONLY aborts all of it), which is what _reconcile relies on.
            pipe = self._client.pipeline(transaction=True)
            for event in batch:
                pipe.xadd(
                    self.stream_key(event.source_id),
                    stream_fields(event),  # type: ignore[arg-type]
                    maxlen=self._maxlen,
                    approximate=True,
                )
            self._unconfirmed = len(batch)
            replies = pipe.execute(raise_on_error=False)
        except RETRYABLE as exc:
            if not isinstance(exc, AMBIGUOUS):
                self._unconfirmed = 0
            self._outage(exc)
            return False
        self._unconfirmed = 0
        for _ in batch:
            self._spool.popleft()
        refused = [e for e, r in zip(batch, replies, strict=True) if isinstance(r, Exception)]
        self._count_delivered(
            [e for e, r in zip(batch, replies, strict=True) if not isinstance(r, Exception)]
        )
        if refused:
            # Back at the head, in order, for the next attempt.
            self._spool.extendleft(reversed(refused))
            error = next(r for r in replies if isinstance(r, Exception))
            if not isinstance(error, RETRYABLE):
                raise error  # e.g. WRONGTYPE: retrying cannot help
            self._outage(error)
            return False
        if self._outage_since is not None:
            log.warning(
                "Redis takes events again after %.1f s (%d events lost meanwhile)",
                time.monotonic() - self._outage_since,
                self._lost_in_outage,
            )
            self._outage_since = None
            self._lost_in_outage = 0
        self._retry_s = RETRY_INITIAL_S
        return True

    def _reconcile(self) -> None:
        """After a batch whose reply was lost: take it off the spool if Redis has it.

        A batch is one transaction, written whole or not at all; the last entry of each
        of its streams tells which.
        """
        batch = list(itertools.islice(self._spool, self._unconfirmed))
        newest_ids: dict[str, object] = {}
        for key in {self.stream_key(e.source_id) for e in batch}:
            newest: Any = self._client.xrevrange(key, count=1)
            if newest:
                raw = newest[0][1].get(b"event")
                newest_ids[key] = json.loads(raw).get("id") if raw else None
        written = 0
        for i, event in enumerate(batch):
            if newest_ids.get(self.stream_key(event.source_id)) == event.payload["id"]:
                written = i + 1
        for _ in range(written):
            self._spool.popleft()
        self._count_delivered(batch[:written])
        self._unconfirmed = 0

    def _outage(self, exc: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("Redis cannot take events (%s); holding them and retrying", exc)

    def _count_delivered(self, events: list[Event]) -> None:
        now_ns = time.monotonic_ns()
        self._stats.events_delivered(
            [None if e.captured_ns is None else (now_ns - e.captured_ns) / 1e6 for e in events]
        )
