"""In-process delivery: a pipeline's events handed to Python code in the same process.

Two kinds of consumer, both given the same `Event` objects the Redis consumer returns:

- a callback (`on_event`), called on this sink's thread for each event, in order;
- subscriptions (`Pipeline.events()`), each a bounded queue that an iterator reads on
  the caller's thread.

Both are lossless, like the Redis sink: when a callback is slow or a subscriber's queue
is full, this sink waits, its inbox fills, and the pipeline waits behind it. An offline
file is then processed at the consumer's pace; a live source keeps the freshest frames
and drops the others before inference, counted as drops, as under any overload. No
event is lost. A callback that raises fails the pipeline (`Pipeline.join()` raises
`PipelineFailed` with the callback's exception as its cause).

Without a Redis sink, an event counts as delivered once every in-process consumer has
it, and its latency ends there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from streamer.events.event import Event
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.messages import Emitted, EndOfStream, EndReason
from streamer.runtime.queues import POLL_S, Overflow, StageQueue, until_ended
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Supervisor

EventCallback = Callable[[Event], None]
_END = EndOfStream("*", EndReason.STOPPED)  # the last item of every subscription


class OnEventFailed(Exception):
    """The pipeline's `on_event` callback raised; the callback's exception is the cause."""


class Subscription:
    """The events of one `Pipeline.events()` iterator: a bounded queue, ended in band."""

    def __init__(self, max_queued: int) -> None:
        # An event a halt keeps out is counted by the sink, from `put`'s answer.
        self._queue: StageQueue[Event] = StageQueue(
            "subscription", max_queued, Overflow.BLOCK, lambda _event, _reason: None
        )
        self.reader: int | None = None  # the thread iterating over it, once one does

    def put(self, event: Event, stop: threading.Event) -> bool:
        """Queue `event`, waiting while the queue is full unless `stop` is set; whether it
        was queued."""
        return self._queue.put(event, stop)

    def end(self) -> None:
        self._queue.put_control(_END)

    def __iter__(self) -> Iterator[Event]:
        """The events until the pipeline's last one."""
        self.reader = threading.get_ident()
        while True:
            item = self._queue.get(POLL_S)
            if item is _END:
                return
            if isinstance(item, Event):
                yield item


class LocalSink:
    """Hands each event to the callback, then to every subscription."""

    name = "deliver"

    def __init__(
        self,
        inbox: StageQueue[Emitted],
        source_ids: list[str],
        stats: RunStats,
        supervisor: Supervisor,
        on_event: EventCallback | None = None,
        counts_delivery: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`counts_delivery`: this sink's handing over is what `delivered` counts (False
        when a Redis sink counts)."""
        self._inbox = inbox
        self._source_ids = source_ids
        self._stats = stats
        self._supervisor = supervisor
        self._on_event = on_event
        self.counts_delivery = counts_delivery
        self._clock = clock
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._ended = False

    @property
    def has_consumers(self) -> bool:
        with self._lock:
            return self._on_event is not None or bool(self._subscriptions)

    def subscribe(self, max_queued: int) -> Subscription:
        """A new subscription, fed from the next event on; an ended one once the pipeline's
        events have ended."""
        subscription = Subscription(max_queued)
        with self._lock:
            if self._ended:
                subscription.end()
            else:
                self._subscriptions.append(subscription)
        return subscription

    def reads_here(self) -> bool:
        """Whether the calling thread is iterating over one of the subscriptions."""
        me = threading.get_ident()
        with self._lock:
            return any(s.reader == me for s in self._subscriptions)

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def end(self) -> None:
        """End every subscription: the pipeline has no more events."""
        with self._lock:
            self._ended = True
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.end()

    def close(self) -> None:
        self.end()

    def run(self) -> None:
        try:
            for item in until_ended(self._inbox, self._source_ids, self._supervisor.halt):
                if isinstance(item, Emitted):
                    self._deliver(item)
        finally:
            # Halted: what is still queued is counted by the pipeline as it stops.
            self.end()

    def _deliver(self, emitted: Emitted) -> None:
        event = emitted.event
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as exc:
                self._count(emitted, delivered=False)
                raise OnEventFailed(f"on_event raised {type(exc).__name__}: {exc}") from exc
        with self._lock:
            subscriptions = list(self._subscriptions)
        queued = [s.put(event, self._supervisor.halt) for s in subscriptions]
        self._count(emitted, delivered=all(queued))

    def _count(self, emitted: Emitted, delivered: bool) -> None:
        if not self.counts_delivery:
            return
        if not delivered:
            self._stats.events_lost(1)
            return
        latency_ms = None
        if emitted.captured_ns is not None:
            latency_ms = (self._clock.monotonic_ns() - emitted.captured_ns) / 1e6
        self._stats.events_delivered([latency_ms])
