"""What a built pipeline is made of: its sources, stage threads, sinks and queues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamer.preview.board import FrameBoard
from streamer.quality.settings import Watchers
from streamer.runtime.queues import Outbox, StageQueue
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Stage, Supervisor
from streamer.sinks.local import LocalSink


class SourceRunner(Protocol):
    """A source's work, run on its own thread: decode frames until it ends."""

    id: str
    failure: Exception | None  # set when the source failed for good

    def run(self) -> None: ...


class Sink(Protocol):
    name: str

    def run(self) -> None: ...

    def close(self) -> None:
        """Release what the sink holds (a spool file, a connection); done once it ran."""


@dataclass(frozen=True)
class StageThread:
    stage: Stage[Any, Any]
    inbox: StageQueue[Any]
    outbox: Outbox[Any]


@dataclass(frozen=True)
class Parts:
    """What a pipeline runs, connected by their queues."""

    sources: Sequence[SourceRunner]
    stages: Sequence[StageThread]
    sinks: Sequence[Sink]
    local: LocalSink  # the in-process consumers; also in `sinks`
    queues: Sequence[StageQueue[Any]]  # every queue: what a stop leaves in them is counted
    stats: RunStats
    supervisor: Supervisor
    board: FrameBoard  # the latest frame of each source, for the preview and snapshots
    watchers: Watchers  # camera health and drift, per source (none without `health:`)
    labels: tuple[str, ...]  # the model's class names
