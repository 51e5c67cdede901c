"""Stage threads: end of stream in order, flush before control items, errors reach the caller."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from streamer.errors import PipelineFailed
from streamer.runtime.messages import Control, DropReason, EndOfStream, SourceStatus
from streamer.runtime.queues import Overflow, StageQueue
from streamer.runtime.threads import Stage, Supervisor, run_stage


def queue(name: str) -> StageQueue:
    def never(item: object, reason: DropReason) -> None:
        raise AssertionError(f"{name} dropped {item} ({reason})")

    return StageQueue(name, 100, Overflow.BLOCK, never)


def drain(q: StageQueue) -> list[object]:
    items = []
    while (item := q.get_nowait()) is not None:
        items.append(item)
    return items


class HoldInPairs(Stage[int, str]):
    """Emits items two at a time, like a batcher; flush hands over a lone one."""

    name = "pairs"

    def __init__(self) -> None:
        self.held: list[int] = []

    def process(self, item: int) -> Iterable[str]:
        self.held.append(item)
        if len(self.held) == 2:
            return self.flush()
        return ()

    def flush(self) -> Iterable[str]:
        out, self.held = [f"{self.held}"], []
        return out if out != ["[]"] else []


def test_control_items_follow_the_data_that_came_before_them():
    inbox, outbox = queue("in"), queue("out")
    stop = threading.Event()
    for i in (1, 2, 3):
        inbox.put(i, stop)
    inbox.put_control(SourceStatus("a", "ended", 0.0))
    inbox.put_control(EndOfStream("a", "eof"))
    run_stage(HoldInPairs(), inbox, outbox, ["a"], Supervisor())
    assert drain(outbox) == [
        "[1, 2]",
        "[3]",
        SourceStatus("a", "ended", 0.0),
        EndOfStream("a", "eof"),
    ]


def test_a_stage_ends_only_when_every_source_has_ended():
    inbox, outbox = queue("in"), queue("out")
    supervisor = Supervisor()
    thread = threading.Thread(target=run_stage, args=(HoldInPairs(), inbox, outbox, ["a", "b"],
                                                      supervisor))  # fmt: skip
    thread.start()
    inbox.put_control(EndOfStream("a", "eof"))
    thread.join(timeout=0.3)
    assert thread.is_alive()
    inbox.put_control(EndOfStream("b", "eof"))
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert drain(outbox) == [EndOfStream("a", "eof"), EndOfStream("b", "eof")]


def test_halt_ends_a_stage_that_waits_for_input():
    supervisor = Supervisor()
    thread = threading.Thread(target=run_stage, args=(HoldInPairs(), queue("in"), queue("out"),
                                                      ["a"], supervisor))  # fmt: skip
    thread.start()
    supervisor.halt.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_an_error_in_a_thread_stops_the_pipeline_and_reaches_the_caller():
    supervisor = Supervisor()

    def broken() -> None:
        raise ValueError("bad weights")

    supervisor.spawn("streamer.infer", broken)
    assert supervisor.join(timeout_s=5)
    assert supervisor.halt.is_set() and supervisor.stop_sources.is_set()
    failure = supervisor.failure
    assert isinstance(failure, PipelineFailed)
    assert str(failure) == "streamer.infer failed: bad weights"
    assert isinstance(failure.__cause__, ValueError)


def test_only_the_first_failure_is_kept():
    supervisor = Supervisor()
    supervisor.fail("one", RuntimeError("first"))
    supervisor.fail("two", RuntimeError("second"))
    assert str(supervisor.failure) == "one failed: first"


def test_control_default_is_forwarded_as_is():
    class Echo(Stage[int, int]):
        def process(self, item: int) -> Iterable[int]:
            return (item,)

    status: Control = SourceStatus("a", "connected", 1.0)
    assert list(Echo().control(status)) == [status]


def test_a_stage_that_fails_is_closed_as_halted():
    """What a failing stage held is counted: its thread closes it as after a halt."""

    class Failing(Stage[int, int]):
        closed_as: bool | None = None

        def process(self, item: int) -> Iterable[int]:
            raise RuntimeError("broken")

        def close(self, halted: bool) -> None:
            self.closed_as = halted

    inbox: StageQueue[int] = StageQueue("in", 4, Overflow.BLOCK, lambda item, reason: None)
    outbox: StageQueue[int] = StageQueue("out", 4, Overflow.BLOCK, lambda item, reason: None)
    inbox.put(1, threading.Event())
    stage = Failing()
    with pytest.raises(RuntimeError, match="broken"):
        run_stage(stage, inbox, outbox, ["cam"], Supervisor())
    assert stage.closed_as is True


@pytest.mark.skipif(sys.platform != "linux", reason="OS thread names are read from /proc")
def test_stage_threads_carry_their_names_to_the_os():
    """`top -H`, /proc and profilers tell the stages apart (the prefix is left out: the OS
    keeps 15 bytes)."""
    seen: list[str] = []

    def read_own_name() -> None:
        native = threading.get_native_id()
        seen.append(Path(f"/proc/self/task/{native}/comm").read_text().strip())

    supervisor = Supervisor()
    supervisor.spawn("streamer.postprocess", read_own_name)
    assert supervisor.join(10)
    assert seen == ["postprocess"]
