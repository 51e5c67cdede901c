"""Queue overflow policies, control items and stop."""

from __future__ import annotations

import threading
import time

import pytest

from streamer.runtime.messages import DropReason, EndOfStream, SourceStatus
from streamer.runtime.queues import Overflow, StageQueue


def make(overflow: Overflow, size: int = 2):
    dropped: list[tuple[object, DropReason]] = []
    q: StageQueue[int] = StageQueue("q", size, overflow, lambda item, r: dropped.append((item, r)))
    return q, dropped


def drain(q: StageQueue) -> list[object]:
    items = []
    while (item := q.get_nowait()) is not None:
        items.append(item)
    return items


def test_drop_oldest_keeps_the_freshest_and_reports_the_evicted():
    q, dropped = make(Overflow.DROP_OLDEST)
    stop = threading.Event()
    for i in range(5):
        assert q.put(i, stop)
    assert drain(q) == [3, 4]
    assert dropped == [
        (0, DropReason.QUEUE_FULL),
        (1, DropReason.QUEUE_FULL),
        (2, DropReason.QUEUE_FULL),
    ]


def test_a_shared_drop_oldest_queue_evicts_from_the_source_with_the_most_waiting():
    """Frames named (source, n): camera a floods the queue, b puts one now and then; each
    overflow takes a's oldest, never b's one frame, so b is not starved."""
    dropped: list[tuple[str, int]] = []
    q: StageQueue[tuple[str, int]] = StageQueue(
        "q", 4, Overflow.DROP_OLDEST, lambda item, _: dropped.append(item),
        share_by=lambda item: item[0],
    )  # fmt: skip
    stop = threading.Event()
    q.put(("b", 0), stop)
    for n in range(6):
        q.put(("a", n), stop)
    assert drain(q) == [("b", 0), ("a", 3), ("a", 4), ("a", 5)]
    assert dropped == [("a", 0), ("a", 1), ("a", 2)]
    for item in [("a", 6), ("a", 7), ("b", 1), ("b", 2), ("a", 8)]:
        q.put(item, stop)
    # Full when a's third frame comes: a, with it, would hold 3 of 5: a's oldest goes.
    assert drain(q) == [("a", 7), ("b", 1), ("b", 2), ("a", 8)]


def test_drop_newest_refuses_the_incoming_item():
    q, dropped = make(Overflow.DROP_NEWEST)
    stop = threading.Event()
    assert [q.put(i, stop) for i in range(4)] == [True, True, False, False]
    assert drain(q) == [0, 1]
    assert dropped == [(2, DropReason.QUEUE_FULL), (3, DropReason.QUEUE_FULL)]


def test_block_waits_for_room_and_loses_nothing():
    q, dropped = make(Overflow.BLOCK, size=1)
    stop = threading.Event()
    received: list[object] = []

    def consume() -> None:
        while len(received) < 50:
            item = q.get(timeout=1)
            if item is not None:
                received.append(item)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(50):
        assert q.put(i, stop)
    consumer.join(timeout=10)
    assert not consumer.is_alive()
    assert received == list(range(50))
    assert dropped == []


def test_a_blocked_put_gives_up_when_stopped_and_counts_the_frame():
    q, dropped = make(Overflow.BLOCK, size=1)
    stop = threading.Event()
    q.put(0, stop)
    result: list[bool] = []
    producer = threading.Thread(target=lambda: result.append(q.put(1, stop)))
    producer.start()
    time.sleep(0.05)
    assert producer.is_alive()  # blocked on the full queue
    stop.set()
    producer.join(timeout=2)
    assert result == [False]
    assert dropped == [(1, DropReason.SHUTDOWN)]


@pytest.mark.parametrize("overflow", list(Overflow))
def test_control_items_are_never_dropped_and_keep_their_place(overflow):
    q, _dropped = make(overflow, size=1)
    stop = threading.Event()
    q.put(1, stop)
    status = SourceStatus("cam", "ended", 0.0)
    eos = EndOfStream("cam", "eof")
    q.put_control(status)
    q.put_control(eos)
    if overflow is Overflow.DROP_OLDEST:
        q.put(2, stop)  # evicts 1, not the control items
        assert drain(q) == [status, eos, 2]
    else:
        assert drain(q) == [1, status, eos]


def test_get_returns_none_after_the_timeout():
    q, _ = make(Overflow.BLOCK)
    started = time.monotonic()
    assert q.get(timeout=0.05) is None
    assert time.monotonic() - started >= 0.04


def test_wake_ends_a_waiting_get_at_once():
    q, _ = make(Overflow.BLOCK)
    waker = threading.Timer(0.05, q.wake)
    started = time.monotonic()
    waker.start()
    try:
        assert q.get(timeout=5.0) is None
    finally:
        waker.join()
    assert time.monotonic() - started < 2.0


def test_a_wake_before_the_get_is_not_lost_and_counts_once():
    q, _ = make(Overflow.BLOCK)
    q.wake()  # the consumer was busy when it came
    started = time.monotonic()
    assert q.get(timeout=5.0) is None
    assert time.monotonic() - started < 1.0
    assert q.get(timeout=0.05) is None  # the next get waits again


def test_size_must_be_positive():
    with pytest.raises(ValueError, match="maxsize must be >= 1"):
        StageQueue("q", 0, Overflow.BLOCK, lambda item, reason: None)
