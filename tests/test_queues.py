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


def test_cameras_faster_than_a_shared_queue_take_turns():
    """Six cameras each put a frame every tick, always in the same order, into a queue
    of four served twice a tick (a third of what comes): each is served a third of its
    frames, in order. Served first come first, with the oldest frame dropped when full,
    the two cameras that come last in each tick would have been served every time and
    the other four never."""
    q: StageQueue[tuple[str, int]] = StageQueue(
        "q", 4, Overflow.DROP_OLDEST, lambda item, _: None, share_by=lambda item: item[0]
    )
    stop = threading.Event()
    served: dict[str, list[int]] = {camera: [] for camera in "abcdef"}
    for tick in range(300):
        for camera in served:
            q.put((camera, tick), stop)
        for _ in range(2):
            item = q.get_nowait()
            assert isinstance(item, tuple)
            served[item[0]].append(item[1])
    assert {camera: len(ticks) for camera, ticks in served.items()} == dict.fromkeys(served, 100)
    assert all(ticks == sorted(ticks) for ticks in served.values())


def test_a_source_is_served_in_its_order_with_its_control_items():
    """Taking turns between sources never changes the order of one source's items: its
    status and end of stream come where it put them among its frames."""
    q: StageQueue[tuple[str, int]] = StageQueue(
        "q", 8, Overflow.DROP_OLDEST, lambda item, _: None, share_by=lambda item: item[0]
    )
    stop = threading.Event()
    status, end = SourceStatus("b", "connected", 0.0), EndOfStream("b", "eof")
    for item in [("b", 0), ("a", 0), ("a", 1), ("b", 1), ("a", 2)]:
        q.put(item, stop)
    q.put_control(status)
    q.put(("b", 2), stop)
    q.put_control(end)
    q.put(("a", 3), stop)
    items = drain(q)
    b_items = [i for i in items if i in (status, end) or (isinstance(i, tuple) and i[0] == "b")]
    assert b_items == [("b", 0), ("b", 1), status, ("b", 2), end]
    assert [i for i in items if isinstance(i, tuple) and i[0] == "a"] == [
        ("a", n) for n in range(4)
    ]
    assert items[:4] == [("b", 0), ("a", 0), ("b", 1), ("a", 1)]  # turns


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
