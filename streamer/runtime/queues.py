"""Bounded queues between stage threads, with a named overflow policy.

The policies map onto GStreamer's `queue leaky=`: `block` (leaky=no, lossless),
`drop_oldest` (leaky=downstream: the freshest frame wins) and `drop_newest`
(leaky=upstream: the incoming frame is refused). Every frame a queue drops goes to
`on_drop`, so drops are always counted. Control items (source status, end of stream)
are never dropped and do not count against the size, so a leaky queue can never lose
the end of a stream.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar, cast

from streamer.enums import StrEnum
from streamer.runtime.messages import Control, DropReason, EndOfStream, HealthChange, SourceStatus

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

POLL_S = 0.1  # the longest a blocked thread goes without re-checking the stop event


class Overflow(StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


def is_control(item: object) -> bool:
    """Source status, health changes and end of stream: items a queue never drops."""
    return isinstance(item, (SourceStatus, HealthChange, EndOfStream))


class StageQueue(Generic[T]):
    """A bounded FIFO of data items of type T and in-band control items."""

    def __init__(
        self,
        name: str,
        maxsize: int,
        overflow: Overflow,
        on_drop: Callable[[T, DropReason], None],
        share_by: Callable[[T], str] | None = None,
    ) -> None:
        """`share_by`: what a data item belongs to (its source). The owners then take
        turns at `get` (each its oldest item, so one owner's items keep their order), and a
        full DROP_OLDEST queue evicts from whichever holds the most: under overload each is
        served alike, whatever the order its items come in, and none is starved."""
        if maxsize < 1:
            raise ValueError(f"queue {name!r}: maxsize must be >= 1, got {maxsize}")
        self.name = name
        self.maxsize = maxsize
        self.overflow = overflow
        self._on_drop = on_drop
        self._share_by = share_by
        self._turns: dict[str, int] = {}  # owner -> the turn it was last served at
        self._turn = 0
        self._items: deque[T | Control] = deque()
        self._data_count = 0
        self._cond = threading.Condition()
        self._woken = False

    def put(self, item: T, stop: threading.Event) -> bool:
        """Add a data item following the overflow policy; False when it was not added."""
        evicted: T | None = None
        reason = DropReason.QUEUE_FULL
        with self._cond:
            while self._data_count >= self.maxsize:
                if self.overflow is Overflow.DROP_NEWEST:
                    break
                if self.overflow is Overflow.DROP_OLDEST:
                    evicted = self._make_room(item)
                    break
                if stop.is_set():
                    reason = DropReason.SHUTDOWN
                    break
                self._cond.wait(POLL_S)
            else:
                self._append(item)
                return True
        # Report outside the lock: the callback takes the stats lock.
        if evicted is None or evicted is item:
            self._on_drop(item, reason)
            return False
        self._on_drop(evicted, reason)
        return True

    def put_control(self, item: Control) -> None:
        """Add a control item; never blocks and never drops."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def get(self, timeout: float = POLL_S) -> T | Control | None:
        """The next item, or None when nothing came within `timeout` seconds or `wake`
        was called."""
        with self._cond:
            if not self._items:
                self._cond.wait_for(lambda: bool(self._items) or self._woken, timeout)
            self._woken = False
            if not self._items:
                return None
            item = self._take_next()
            if not is_control(item):
                self._data_count -= 1
            self._cond.notify_all()
            return item

    def wake(self) -> None:
        """Make the `get` waiting now, or the next one, return at once (None when empty):
        the consumer has something else to do, such as hand on a finished batch."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def wait_for_room(self, timeout: float = POLL_S) -> bool:
        """True once a data item can be added without dropping or waiting."""
        with self._cond:
            return self._cond.wait_for(lambda: self._data_count < self.maxsize, timeout)

    def get_nowait(self) -> T | Control | None:
        return self.get(timeout=0)

    def discard_all(self, reason: DropReason) -> None:
        """Empty the queue, each data item reported to `on_drop` with `reason`: what a
        stopped pipeline left behind is counted, never silently gone."""
        while (item := self.get_nowait()) is not None:
            if not is_control(item):
                self._on_drop(item, reason)  # type: ignore[arg-type]

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def _append(self, item: T) -> None:
        self._items.append(item)
        self._data_count += 1
        self._cond.notify_all()

    def _make_room(self, incoming: T) -> T:
        """Put `incoming` in a full queue instead of the oldest data item, or, with
        `share_by`, instead of the oldest item of the owner that holds the most (counting
        `incoming`), of those the one served last. What was taken out: `incoming` itself
        when its owner is that one and has nothing waiting (it waits for its turn)."""
        data = [(i, cast(T, q)) for i, q in enumerate(self._items) if not is_control(q)]
        if not data:
            raise AssertionError("a full queue holds at least one data item")
        share_by = self._share_by
        index, victim = data[0]
        if share_by is not None:
            mine = share_by(incoming)
            owners = Counter(share_by(q) for _, q in data)
            owners[mine] += 1
            most = max(owners.values())
            # The one served last; of owners never served, the newcomer's own.
            owner = max(
                (o for o, n in owners.items() if n == most),
                key=lambda o: (self._turns.get(o, -1), o == mine),
            )
            if owner == mine and owners[mine] == 1:
                return incoming
            index, victim = next((i, q) for i, q in data if share_by(q) == owner)
        del self._items[index]
        self._items.append(incoming)
        return victim

    def _take_next(self) -> T | Control:
        """The oldest item, or, with `share_by`, the oldest item of the owner served
        longest ago: owners take turns, whatever the order their items come in."""
        share_by = self._share_by
        if share_by is None:
            return self._items.popleft()
        earliest: dict[str, int] = {}
        for i, q in enumerate(self._items):
            earliest.setdefault(q.source_id if isinstance(q, Control) else share_by(q), i)
        owner = min(earliest, key=lambda o: (self._turns.get(o, -1), earliest[o]))
        self._turn += 1
        self._turns[owner] = self._turn
        item = self._items[earliest[owner]]
        del self._items[earliest[owner]]
        return item


class Outbox(Protocol[T_contra]):
    """Where a stage thread puts what its stage made: a queue, or several (`FanOut`)."""

    @property
    def overflow(self) -> Overflow: ...

    def put(self, item: T_contra, stop: threading.Event) -> bool: ...

    def put_control(self, item: Control) -> None: ...

    def wait_for_room(self, timeout: float = POLL_S) -> bool: ...


class FanOut(Generic[T]):
    """Every item put into each of several lossless queues: one stage feeding several
    sinks, each at its own pace; the slowest one sets the pace of all."""

    overflow = Overflow.BLOCK

    def __init__(self, queues: Sequence[StageQueue[T]]) -> None:
        if any(q.overflow is not Overflow.BLOCK for q in queues):
            raise ValueError("a fan-out feeds lossless queues only")
        self.queues = list(queues)

    def put(self, item: T, stop: threading.Event) -> bool:
        """True when every queue took the item (each one that did not counted it)."""
        added = [q.put(item, stop) for q in self.queues]
        return all(added)

    def put_control(self, item: Control) -> None:
        for q in self.queues:
            q.put_control(item)

    def wait_for_room(self, timeout: float = POLL_S) -> bool:
        return all(q.wait_for_room(timeout) for q in self.queues)


def until_ended(
    inbox: StageQueue[T], source_ids: Iterable[str], halt: threading.Event
) -> Iterator[T | Control]:
    """What `inbox` brings, end-of-stream markers included, until every one of
    `source_ids` has sent its end of stream or `halt` is set: a sink's whole loop."""
    remaining = set(source_ids)
    while remaining and not halt.is_set():
        item = inbox.get(POLL_S)
        if isinstance(item, EndOfStream):
            remaining.discard(item.source_id)
        if item is not None:
            yield item
