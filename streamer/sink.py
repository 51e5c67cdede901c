"""The Redis Streams sink: events to `XADD key MAXLEN ~ N * event <json> type <t> source <s>`.

Events are written in pipelined batches. While Redis cannot be reached, events wait
in a bounded in-memory spool and are retried with backoff, in order; only when the
spool is full is the oldest event dropped, and it is counted as lost and reported.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque

import redis

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


def connect(url: str) -> redis.Redis:
    """A client for `url`, checked with PING; SinkError naming the URL when unreachable."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise SinkError(f"{redact(url)}: Redis unreachable ({redact(str(exc))})") from None
    return client


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
        self._retry_s = RETRY_INITIAL_S
        self._outage_since: float | None = None

    def stream_key(self, source_id: str) -> str:
        return self._template.format(pipeline=self._pipeline, source=source_id)

    def run(self) -> None:
        remaining = set(self._source_ids)
        halt = self._supervisor.halt
        while not halt.is_set():
            remaining -= self._take(POLL_S if not self._spool else 0.0)
            if self._spool:
                if not self._send():
                    halt.wait(self._retry_s)
                    self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
            elif not remaining:
                return
        # Halted: a last bounded try, then whatever is left is lost, and said so.
        self._take(0.0)
        give_up = time.monotonic() + FINAL_FLUSH_S
        while self._spool and time.monotonic() < give_up and self._send():
            self._take(0.0)
        if self._spool:
            log.error("%d events could not be delivered to Redis and are lost", len(self._spool))
            self._stats.events_lost(len(self._spool))
            self._spool.clear()

    def _take(self, timeout_s: float) -> set[str]:
        """Move queued events into the spool; the sources whose stream ended."""
        ended: set[str] = set()
        item = self._inbox.get(timeout_s)
        while item is not None:
            if isinstance(item, EndOfStream):
                ended.add(item.source_id)
            elif isinstance(item, Event):
                if len(self._spool) >= SPOOL_LIMIT:
                    self._spool.popleft()
                    self._stats.events_lost(1)
                    log.error("event spool full (%d): oldest event lost", SPOOL_LIMIT)
                self._spool.append(item)
            if len(self._spool) >= BATCH_SIZE:
                break
            item = self._inbox.get_nowait()
        return ended

    def _send(self) -> bool:
        """Write up to BATCH_SIZE spooled events; False when Redis could not be reached."""
        batch = [self._spool[i] for i in range(min(BATCH_SIZE, len(self._spool)))]
        pipe = self._client.pipeline(transaction=False)
        for event in batch:
            pipe.xadd(
                self.stream_key(event.source_id),
                stream_fields(event),  # type: ignore[arg-type]
                maxlen=self._maxlen,
                approximate=True,
            )
        try:
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning("Redis unreachable (%s); holding events and retrying", exc)
            return False
        if self._outage_since is not None:
            log.warning("Redis reachable again after %.1f s", time.monotonic() - self._outage_since)
            self._outage_since = None
        self._retry_s = RETRY_INITIAL_S
        delivered_ns = time.monotonic_ns()
        for _ in batch:
            self._spool.popleft()
        self._stats.events_delivered(
            [
                (delivered_ns - e.captured_ns) / 1e6 if e.captured_ns is not None else None
                for e in batch
            ]
        )
        return True
