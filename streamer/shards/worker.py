"""A shard: one `Pipeline` over a share of the sources, in a process of its own.

`ShardRunner` builds and runs the shard's pipeline and says how it goes as messages;
`run_shard` is the main of a shard process, talking to its supervisor over a pipe.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import FrameType

from streamer.config.schema import PipelineConfig
from streamer.errors import PipelineFailed, StreamerError
from streamer.observability import logs
from streamer.pipeline.build import Recording, ShardRun, build
from streamer.pipeline.lifecycle import DRAIN_TIMEOUT_S, Pipeline, down_budgets
from streamer.runtime.clock import SYSTEM_CLOCK
from streamer.runtime.stats import Totals
from streamer.shards.ledger import EmitLedger
from streamer.shards.messages import (
    SendSnapshots,
    ShardEnded,
    ShardMessage,
    ShardProgress,
    ShardStarted,
    StopShard,
)

log = logging.getLogger(__name__)

REPORT_EVERY_S = 0.25  # how often a shard sends its counts
SNAPSHOT_EVERY_S = 1.0  # how often it sends its sources' snapshots, while wanted


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard process needs; sent to it whole (it is pickled)."""

    name: str  # "shard-0", ...
    config: PipelineConfig  # with this shard's sources only
    redis_url: str
    run_id: str
    max_frames: int | None = None
    restarted: str | None = None  # why it replaces a shard that died; None: first start
    last_track_ids: Mapping[str, int] = field(default_factory=dict)
    verbose: bool = False
    record: Recording | None = None  # where the processed video of its sources goes


class ShardRunner:
    """A shard's pipeline, driven by whoever runs the shard (a process, a Ray actor)."""

    def __init__(self, spec: ShardSpec, ledger: EmitLedger) -> None:
        """`ledger`: where the shard's events are recorded, and its reports read from."""
        self.spec = spec
        self._ledger = ledger
        self._sources = [s.id for s in spec.config.sources]
        self._pipeline: Pipeline | None = None
        self._snapshots_until = 0.0  # monotonic: send snapshots until then
        self._snapshots_sent = 0.0

    def start(self) -> ShardStarted | ShardEnded:
        """Build and start the pipeline; ShardEnded with the reason when it cannot."""
        spec = self.spec
        shard = ShardRun(spec.run_id, self._ledger, spec.restarted, spec.last_track_ids)
        try:
            built = build(
                spec.config,
                redis_url=spec.redis_url,
                max_frames=spec.max_frames,
                on_event=None,
                clock=SYSTEM_CLOCK,
                shard=shard,
                record=spec.record,
            )
        except StreamerError as exc:
            return ShardEnded(Totals(), str(exc))
        pipeline = Pipeline(
            spec.config.name,
            built.run_id,
            built.parts,
            expected_frames=built.expected_frames,
            down_budget_s=down_budgets(spec.config),
        )
        pipeline.start()
        self._pipeline = pipeline
        return ShardStarted(socket.gethostname(), os.getpid(), dict(built.last_seqs))

    def poll(self, timeout_s: float) -> ShardProgress | ShardEnded:
        """Wait up to `timeout_s` for the run to end: its counts, and whether it ended."""
        pipeline = self._started()
        try:
            if not pipeline.join(timeout_s):
                sources = self._sources
                return ShardProgress(
                    pipeline.totals(),
                    self._ledger.seqs(sources),
                    self._ledger.track_ids(sources),
                    self._snapshots(pipeline),
                )
        except PipelineFailed as exc:
            return ShardEnded(pipeline.totals(), _describe(exc))
        return ShardEnded(pipeline.totals(), None)

    def stop(self, drain_timeout_s: float) -> None:
        self._started().stop(drain_timeout_s, wait=False)

    def want_snapshots(self, for_s: float) -> None:
        self._snapshots_until = time.monotonic() + for_s

    def _snapshots(self, pipeline: Pipeline) -> dict[str, bytes]:
        """The sources' snapshots, when wanted and their time has come; else none."""
        now = time.monotonic()
        if now >= self._snapshots_until or now - self._snapshots_sent < SNAPSHOT_EVERY_S:
            return {}
        self._snapshots_sent = now
        return {sid: pipeline.snapshot(sid) for sid in self._sources}

    def stuck(self) -> list[str]:
        return [] if self._pipeline is None else self._pipeline.threads_alive()

    def _started(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError(f"{self.spec.name} has not started")
        return self._pipeline


def _describe(exc: PipelineFailed) -> str:
    cause = exc.__cause__
    return f"{exc}: {cause}" if cause is not None else str(exc)


def run_shard(spec: ShardSpec, conn: Connection, ledger: EmitLedger) -> None:
    """The main of a shard process: run the shard, report to the supervisor on `conn`
    every REPORT_EVERY_S, stop when told. It ends when its pipeline ends; when the
    supervisor is gone (its end of the pipe closed), it stops at once."""
    # Ctrl-C reaches the whole process group; the supervisor decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.setup(spec.verbose, spec.name)
    runner = ShardRunner(spec, ledger)

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        runner.stop(DRAIN_TIMEOUT_S)

    message: ShardMessage = runner.start()
    try:
        conn.send(message)
        if isinstance(message, ShardEnded):
            return
        signal.signal(signal.SIGTERM, on_sigterm)
        while not isinstance(message, ShardEnded):
            while conn.poll():
                order = conn.recv()
                if isinstance(order, StopShard):
                    runner.stop(order.drain_timeout_s)
                elif isinstance(order, SendSnapshots):
                    runner.want_snapshots(order.for_s)
            message = runner.poll(REPORT_EVERY_S)
            conn.send(message)
    except (EOFError, OSError):
        log.error("%s: the supervisor is gone; stopping now", spec.name)
        if not isinstance(message, ShardEnded):  # still running
            runner.stop(0.0)
            runner.poll(DRAIN_TIMEOUT_S)
    if runner.stuck():
        os._exit(1)  # threads stuck in a library call: do not wait for them
