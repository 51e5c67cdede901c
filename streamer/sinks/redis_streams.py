"""The Redis Streams sink: events to `XADD key MAXLEN ~ N * event <json> type <t> source <s>`.

Events go through a spool (streamer.spool: in memory by default, or a SQLite file) and are
written from it in pipelined batches. While Redis cannot be reached (or answers that it
cannot write for now: loading, read-only replica, out of memory), they wait in the spool
and are retried with backoff, in order, while the sink goes on taking new ones behind
them; only when the spool is full are the oldest dropped, counted as lost and reported.
With a spool file, what it holds when the process ends (Redis still away, a crash, kill
-9) is delivered first by the next run that uses the file.

Delivery is at least once. Each batch is one server-side script (`XADD_BATCH`), or one
MULTI/EXEC transaction where Redis cannot run it: either way Redis writes it whole or
not at all. When its reply is lost (a timeout, a connection cut, a process that died),
the next attempt first looks in each stream for the batch's events (other writers, such
as the other shards of a run, may have added entries since) and does not write again a
batch Redis already has.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

import redis
from redis.commands.core import Script

from streamer.client.connection import RedisClient, connect, is_cluster
from streamer.config.schema import RedisSinkConfig
from streamer.errors import RedisUnavailable, SinkError
from streamer.events.factory import ulid_ms
from streamer.observability.redact import redact
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.messages import Attachment, Emitted, EndOfStream
from streamer.runtime.queues import POLL_S, StageQueue
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Supervisor
from streamer.sinks.readback import last_seqs, stream_event_ids
from streamer.sinks.spool import Pending, Spool, open_spool

log = logging.getLogger(__name__)

BATCH_SIZE = 512  # events per pipelined round trip
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 5.0
SOCKET_TIMEOUT_S = 5.0
FINAL_FLUSH_S = 2.0  # how long a halted sink still tries to deliver what it holds
# How far Redis's clock (stream entry ids) may be behind the clock that made the events.
CLOCK_SKEW_MS = 60_000
SHOWN_KEYS = 3  # stream keys the start-up log names
MAX_ATTACHMENTS = 256  # event pictures held while Redis is away; beyond, the oldest go
WAIT_RETRY_S = 0.5  # how often Redis is tried again while a run waits for it at start

# Replies that mean "not now" rather than "never": the batch is retried.
RETRYABLE = (
    redis.ConnectionError,  # includes BusyLoadingError
    redis.TimeoutError,
    # EXEC refused because a queued command was (a replica turned read-only mid-batch):
    # Redis discarded the whole transaction, so sending it again writes nothing twice.
    redis.exceptions.ExecAbortError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
)
# Failures after which Redis may or may not have written part of the batch.
AMBIGUOUS = (redis.ConnectionError, redis.TimeoutError)

# A batch as one command: redis-py packs each command of a MULTI/EXEC batch and parses
# each reply in Python, half of the sink's time; a script is one command and one reply.
# Redis runs a script whole, as it runs a transaction. Its flags line (Redis 7) makes
# Redis refuse the whole script up front where nothing can be written now (a read-only
# replica, out of memory), as EXEC refuses a transaction; each XADD's own error (such as
# WRONGTYPE) comes back in its place in the reply, as in EXEC's.
# ARGV: MAXLEN's count, then for each event its key's index in KEYS, event, type, source.
XADD_BATCH = """#!lua
local replies = {}
for i = 2, #ARGV, 4 do
  replies[#replies + 1] = redis.pcall('XADD', KEYS[tonumber(ARGV[i])], 'MAXLEN', '~',
    ARGV[1], '*', 'event', ARGV[i + 1], 'type', ARGV[i + 2], 'source', ARGV[i + 3])
end
return replies
"""


def connect_sink(url: str, wait_s: float = 0.0, clock: Clock = SYSTEM_CLOCK) -> RedisClient:
    """`connect` with the sink's socket timeout (an outage shows within seconds); while
    Redis cannot be reached, retried for up to `wait_s` (RedisUnavailable after that)."""
    deadline_ns = clock.monotonic_ns() + int(wait_s * 1e9)
    told = False
    while True:
        try:
            return connect(url, socket_timeout_s=SOCKET_TIMEOUT_S)
        except RedisUnavailable as exc:
            left_s = (deadline_ns - clock.monotonic_ns()) / 1e9
            if left_s <= 0 or not exc.unreachable:
                raise
            if not told:
                log.warning("%s; waiting up to %.0f s for it (sink.redis.wait_s)", exc, left_s)
                told = True
            clock.wait(threading.Event(), min(WAIT_RETRY_S, left_s))


def stream_keys(template: str, pipeline: str, source_ids: Iterable[str]) -> list[str]:
    """The streams a pipeline's sources write to, each once, sorted."""
    return sorted({template.format(pipeline=pipeline, source=sid) for sid in source_ids})


def check_stream_keys(client: RedisClient, keys: list[str], url: str) -> None:
    """SinkError when one of `keys` exists and is not a stream (XADD would fail on it)."""
    for key in keys:
        kind: Any = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in ("none", "stream"):
            raise SinkError(f"{redact(url)}: key {key!r} holds a {kind}, not a stream")


def stream_fields(emitted: Emitted) -> dict[str, str]:
    """The fields of an event's stream entry."""
    event = emitted.event
    return {"event": emitted.json, "type": str(event.type), "source": event.source}


class RedisSink:
    name = "sink"

    def __init__(
        self,
        client: RedisClient,
        stream_template: str,
        pipeline: str,
        maxlen: int,
        spool: Spool,
        inbox: StageQueue[Emitted],
        source_ids: list[str],
        stats: RunStats,
        supervisor: Supervisor,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._client = client
        self._template = stream_template
        self._pipeline = pipeline
        self._maxlen = maxlen
        self._spool = spool
        self._inbox = inbox
        self._source_ids = source_ids
        self._stats = stats
        self._supervisor = supervisor
        self._keys: dict[str, str] = {}  # source id -> stream key
        # None once Redis has refused to run it: batches then go as MULTI/EXEC.
        self._script: Script | None = client.register_script(XADD_BATCH)
        # Events at the head of the spool that Redis may have. An earlier run may have died
        # between writing a batch and hearing back: its events are checked before sending.
        self._unconfirmed = min(spool.recovered, BATCH_SIZE)
        self._written: set[str] = set()  # ids of spooled events Redis has already
        self._retry_s = RETRY_INITIAL_S
        self._retry_at = 0.0  # monotonic; no write before it (backoff)
        self._outage_since: float | None = None
        self._lost_in_outage = 0
        self._attachments: deque[Attachment] = deque()  # written before the next batch
        self._closed = False

    @classmethod
    def from_config(
        cls,
        config: RedisSinkConfig,
        url: str,
        pipeline: str,
        inbox: StageQueue[Emitted],
        source_ids: list[str],
        stats: RunStats,
        supervisor: Supervisor,
        clock: Clock = SYSTEM_CLOCK,
    ) -> RedisSink:
        """Connect to Redis at `url`, open the spool, and check that the streams can be
        written; RedisUnavailable or SinkError naming what is wrong."""
        client = connect_sink(url, config.wait_s, clock)
        spool = open_spool(config.spool_path, config.spool_max_events)
        keys = stream_keys(config.stream, pipeline, source_ids)
        # Also the streams of events an earlier run left in the spool file.
        check_stream_keys(client, sorted(set(keys) | spool.keys()), url)
        shown = ", ".join(keys[:SHOWN_KEYS]) + (
            f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
        )
        log.info("writing events to %s, stream %s", redact(url), shown)
        return cls(
            client, config.stream, pipeline, config.maxlen, spool, inbox, source_ids, stats,
            supervisor, clock,
        )  # fmt: skip

    def _now_s(self) -> float:
        return self._clock.monotonic_ns() / 1e9

    def stream_key(self, source_id: str) -> str:
        key = self._keys.get(source_id)
        if key is None:
            key = self._keys[source_id] = self._template.format(
                pipeline=self._pipeline, source=source_id
            )
        return key

    def last_seqs(self, run_id: str) -> dict[str, int]:
        """Per source, the last seq of `run_id` that Redis has or the spool still holds
        (see `streamer.sinks.readback`)."""
        keys = {sid: self.stream_key(sid) for sid in self._source_ids}
        return last_seqs(self._client, keys, run_id, self._spool.head(len(self._spool)))

    def run(self) -> None:
        remaining = set(self._source_ids)
        halt = self._supervisor.halt
        try:
            while not halt.is_set():
                # While backing off, new events are still taken in: the spool, not the
                # queue, holds the backlog, and the stages upstream go on.
                wait_s = POLL_S
                if len(self._spool):
                    wait_s = min(POLL_S, max(0.0, self._retry_at - self._now_s()))
                remaining -= self._take(wait_s)
                if len(self._spool):
                    if self._now_s() >= self._retry_at and not self._send():
                        self._retry_at = self._now_s() + self._retry_s
                        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
                elif not remaining:
                    return
            # Halted: a last bounded try.
            self._take(0.0)
            give_up = self._now_s() + FINAL_FLUSH_S
            while len(self._spool) and self._now_s() < give_up and self._send():
                self._take(0.0)
        finally:
            self.close()

    def close(self) -> None:
        """Close the spool (events still in memory are lost, and counted) and the client."""
        if self._closed:
            return
        self._closed = True
        if self._attachments:
            log.error("%d snapshots could not be stored in Redis", len(self._attachments))
        lost = self._spool.close()
        if lost:
            log.error("%d events could not be delivered to Redis and are lost", lost)
            self._stats.events_lost(lost)
        self._client.close()

    def _take(self, timeout_s: float) -> set[str]:
        """Move queued events into the spool; the sources whose stream ended.

        Normally one batch for each batch written, so that a slow Redis slows the pipeline
        down rather than filling the spool; during an outage everything queued, so that
        the pipeline goes on and the spool, not the queue, holds the backlog.
        """
        ended: set[str] = set()
        taken: list[Pending] = []
        room = BATCH_SIZE if self._outage_since is None else None
        item = self._inbox.get(timeout_s)
        while item is not None:
            if isinstance(item, EndOfStream):
                ended.add(item.source_id)
            elif isinstance(item, Emitted):
                if item.attachment is not None:
                    self._attach(item.attachment)
                taken.append(
                    Pending(
                        self.stream_key(item.event.source),
                        item.event.id,
                        stream_fields(item),
                        item.captured_ns,
                    )
                )
            if room is not None and len(taken) >= room:
                break
            item = self._inbox.get_nowait()
        if taken:
            self._keep(taken)
        return ended

    def _attach(self, attachment: Attachment) -> None:
        if len(self._attachments) >= MAX_ATTACHMENTS:
            lost = self._attachments.popleft()
            log.warning(
                "Redis is away: the snapshot %s is lost (its event still names it)", lost.key
            )
        self._attachments.append(attachment)

    def _write_attachments(self) -> None:
        """Store the pictures taken since the last batch, each under its own expiring key,
        before the events that name them."""
        pipe = self._client.pipeline(transaction=False)
        for a in self._attachments:
            pipe.set(a.key, a.data, px=max(1, int(a.ttl_s * 1000)))
        pipe.execute()
        self._attachments.clear()

    def _keep(self, taken: list[Pending]) -> None:
        dropped = self._spool.extend(taken)
        if dropped:
            if not self._lost_in_outage:
                log.error(
                    "event spool full (%d events): losing the oldest ones", self._spool.max_events
                )
            self._unconfirmed = max(0, self._unconfirmed - dropped)
            self._lost_in_outage += dropped
            self._stats.events_lost(dropped)

    def _send(self) -> bool:
        """Write up to BATCH_SIZE spooled events; False when Redis cannot take them now."""
        try:
            if self._unconfirmed:
                self._reconcile()
        except RETRYABLE as exc:  # the batch in doubt stays so, to be checked next time
            self._outage(exc)
            return False
        if self._attachments:
            try:
                self._write_attachments()
            except RETRYABLE as exc:
                self._outage(exc)
                return False
        batch = self._spool.head(BATCH_SIZE)
        self._unconfirmed = len(batch)
        try:
            replies = self._write_parts([p for p in batch if p.event_id not in self._written])
        except RETRYABLE as exc:
            if not isinstance(exc, AMBIGUOUS):  # refused whole: nothing was written
                self._unconfirmed = 0
            self._outage(exc)
            return False
        self._unconfirmed = 0
        self._spool.drop(len(batch))
        self._written.difference_update(p.event_id for p in batch)
        self._count_delivered(
            [p for p in batch if not isinstance(replies.get(p.event_id), Exception)]
        )
        errors = [r for r in replies.values() if isinstance(r, Exception)]
        if errors:
            # Refused while the batch ran (e.g. WRONGTYPE: a key changed type since the
            # start). "Not now" replies refuse the whole batch and are retried above.
            self._stats.events_lost(len(errors))
            raise errors[0]
        if self._outage_since is not None:
            log.warning(
                "Redis takes events again after %.1f s (%d events lost meanwhile)",
                self._now_s() - self._outage_since,
                self._lost_in_outage,
            )
            self._outage_since = None
            self._lost_in_outage = 0
            self._stats.sink_down(False)
        self._retry_s = RETRY_INITIAL_S
        return True

    def _write_parts(self, batch: list[Pending]) -> dict[str, Any]:
        """Write `batch`; Redis's reply to each event, by event id. On a Redis Cluster
        each stream's share is written on its own (a script or a transaction may only
        touch keys of one slot), whole or not at all; the events of the parts written
        before one fails are kept in `_written`, not to be written again."""
        if not batch:  # every event of it was written before: nothing to send
            return {}
        parts = [batch]
        if is_cluster(self._client) and len({p.key for p in batch}) > 1:
            parts = [
                [p for p in batch if p.key == key] for key in dict.fromkeys(p.key for p in batch)
            ]
        replies: dict[str, Any] = {}
        for part in parts:
            for pending, reply in zip(part, self._write(part), strict=True):
                replies[pending.event_id] = reply
            if len(parts) > 1:
                self._written.update(p.event_id for p in part)
        return replies

    def _write(self, batch: list[Pending]) -> list[Any]:
        """Write `batch` whole or not at all; Redis's reply to each event: its entry's id,
        or the error its XADD met."""
        if self._script is not None:
            keys = list(dict.fromkeys(p.key for p in batch))
            index = {key: i for i, key in enumerate(keys, 1)}
            args: list[str | int] = [self._maxlen]
            for pending in batch:
                fields = pending.fields
                args += (index[pending.key], fields["event"], fields["type"], fields["source"])
            try:
                replies: list[Any] = self._script(keys=keys, args=args)
                return replies
            except redis.ResponseError as exc:
                if isinstance(exc, RETRYABLE):
                    raise
                # Refused before it ran (no scripting in this user's ACL, EVAL renamed,
                # a Redis older than 7): nothing was written.
                log.warning(
                    "Redis does not run the batch script (%s): writing events in MULTI/EXEC "
                    "transactions, more slowly",
                    exc,
                )
                self._script = None
        return self._write_transaction(batch)

    def _write_transaction(self, batch: list[Pending]) -> list[Any]:
        """`batch` as one MULTI/EXEC transaction, where Redis will not run the script."""
        pipe = self._client.pipeline(transaction=True)
        for pending in batch:
            # The command as Redis reads it: redis-py's xadd() builds the same arguments
            # through keyword handling that cost 13 % of the sink's throughput.
            fields = pending.fields
            pipe.execute_command(
                "XADD", pending.key, "MAXLEN", "~", self._maxlen, "*",
                "event", fields["event"], "type", fields["type"], "source", fields["source"],
            )  # fmt: skip
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies

    def _reconcile(self) -> None:
        """After a batch whose reply was lost: find which of its events Redis has, so as
        not to write them again.

        They are looked for by id in their streams, among the entries added since the
        first of them was made (other writers, such as the other shards of a run, may have
        added entries since).
        """
        batch = self._spool.head(self._unconfirmed)
        for key in {p.key for p in batch}:
            since_ms = min(ulid_ms(p.event_id) for p in batch if p.key == key)
            present = stream_event_ids(self._client, key, since_ms - CLOCK_SKEW_MS)
            self._written.update(
                p.event_id for p in batch if p.key == key and p.event_id in present
            )
        self._unconfirmed = 0

    def _outage(self, exc: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = self._now_s()
            self._stats.sink_down(True)
            log.warning(
                "Redis cannot take events (%s); holding them and retrying", redact(str(exc))
            )

    def _count_delivered(self, delivered: list[Pending]) -> None:
        now_ns = self._clock.monotonic_ns()
        self._stats.events_delivered(
            [None if p.captured_ns is None else (now_ns - p.captured_ns) / 1e6 for p in delivered]
        )
