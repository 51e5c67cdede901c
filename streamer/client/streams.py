"""Reading the events of many streams at once: a site whose stream key has `{source}`
writes one stream per camera (spread over the slots of a Redis Cluster).

`StreamsConsumer` reads every stream matching a pattern (such as `streamer:site:*`) or
named in a list, each with its own `Consumer` (so each stream keeps its order, and with
a consumer group, each its own group position), taking turns. Streams that appear later
(a camera added) are picked up while following. On a single Redis each stream could be
read in one command, but a cluster refuses commands across slots: one read per stream
works for both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from types import TracebackType

from streamer.client.connection import RedisClient, connect
from streamer.client.consumer import BATCH, Consumer, find_streams
from streamer.events.event import Event

IDLE_WAIT_S = 0.1  # while following: the pause after a round that found nothing
RESCAN_S = 5.0  # while following a pattern: how often new streams are looked for


def is_pattern(stream: str) -> bool:
    return any(c in stream for c in "*?[")


class StreamsConsumer:
    """Events of the streams named by `streams` (keys, or patterns), read plainly or as
    `name` in consumer group `group`; `start` and `auto_ack` as for `Consumer`, applied
    to each stream."""

    def __init__(
        self,
        client: RedisClient,
        streams: str | Sequence[str],
        group: str | None = None,
        name: str | None = None,
        *,
        start: str | int = "0",
        auto_ack: bool = False,
    ) -> None:
        self.client = client
        self.patterns = [streams] if isinstance(streams, str) else list(streams)
        self.group = group
        self.name = name
        self.auto_ack = auto_ack
        self._start = start
        self._consumers: dict[str, Consumer] = {}
        self._scanned_at = float("-inf")
        self._rescan()

    @classmethod
    def connect(
        cls,
        url: str,
        streams: str | Sequence[str],
        group: str | None = None,
        name: str | None = None,
        *,
        start: str | int = "0",
        auto_ack: bool = False,
    ) -> StreamsConsumer:
        """A consumer on a new client for `url`; StreamerError when Redis is unreachable."""
        return cls(connect(url), streams, group, name, start=start, auto_ack=auto_ack)

    @property
    def streams(self) -> list[str]:
        """The streams read so far."""
        return list(self._consumers)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> StreamsConsumer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def events(
        self, *, follow: bool = False, limit: int | None = None, claim_idle_ms: int | None = None
    ) -> Iterator[Event]:
        """Events until every stream is caught up, or for ever with `follow`; at most
        `limit`. In order within each stream; the streams take turns."""
        taken = 0
        while limit is None or taken < limit:
            if follow and time.monotonic() - self._scanned_at >= RESCAN_S:
                self._rescan()
            found = False
            for consumer in list(self._consumers.values()):
                want = BATCH if limit is None else min(BATCH, limit - taken)
                if want == 0:
                    return
                for event in consumer.events(limit=want, claim_idle_ms=claim_idle_ms):
                    found = True
                    yield event
                    if self.auto_ack:
                        consumer.ack(event)
                    taken += 1
            if not found:
                if not follow:
                    return
                time.sleep(IDLE_WAIT_S)

    def ack(self, *events: Event) -> int:
        """Acknowledge `events` in the group, each in its stream; how many were pending."""
        if any(e.stream not in self._consumers for e in events):
            raise ValueError("only events read by this consumer can be acknowledged")
        done = 0
        for stream, consumer in self._consumers.items():
            mine = [e for e in events if e.stream == stream]
            if mine:
                done += consumer.ack(*mine)
        return done

    def _rescan(self) -> None:
        # A stream that appears after the first look is new: all of it is read.
        start = self._start if self._scanned_at == float("-inf") else "0"
        self._scanned_at = time.monotonic()
        for pattern in self.patterns:
            keys = find_streams(self.client, pattern) if is_pattern(pattern) else [pattern]
            for key in keys:
                if key not in self._consumers:
                    self._consumers[key] = Consumer(
                        self.client, key, self.group, self.name, start=start
                    )
