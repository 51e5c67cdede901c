"""A running shard as its supervisor sees it, wherever it runs: a `ShardHandle`.

`ProcessShard` is a shard in a spawned process of this machine, talking over a pipe;
`streamer.shards.ray_actors` has the same for a Ray actor on any machine of a cluster.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterable
from typing import Protocol

from streamer.shards.ledger import EmitLedger
from streamer.shards.messages import SendSnapshots, ShardMessage, StopShard
from streamer.shards.worker import ShardSpec, run_shard


class ShardHandle(Protocol):
    pid: int  # 0 until known
    node_id: str  # the Ray node it runs on; "" for a process of this machine

    def receive(self) -> list[ShardMessage]:
        """What the shard said since the last call; never blocks."""

    def exited(self) -> str | None:
        """None while it runs; once it is gone, how it went ("exit 0", "killed by signal
        9", "its node died")."""

    def stop(self, drain_timeout_s: float) -> None:
        """Ask it to stop, draining for up to `drain_timeout_s`."""

    def kill(self) -> None: ...

    def want_snapshots(self, for_s: float) -> None:
        """Ask it to send its sources' snapshots for the next `for_s` seconds."""

    def made(self, source_ids: Iterable[str]) -> dict[str, int]:
        """Per source, the last seq it made (as far as the supervisor can know)."""

    def track_ids(self, source_ids: Iterable[str]) -> dict[str, int]:
        """Per source, the highest track id its events named."""


class Launcher(Protocol):
    def __call__(self, spec: ShardSpec) -> ShardHandle: ...

    def close(self) -> None:
        """Release what launching needed, once every shard has ended."""


class ProcessShard:
    """A shard in a process of this machine. Its events are recorded in memory shared
    with the supervisor, so what it made is known exactly even after kill -9."""

    def __init__(self, spec: ShardSpec, ledger: EmitLedger) -> None:
        context = multiprocessing.get_context("spawn")
        self._ledger = ledger
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=run_shard, args=(spec, child, ledger), name=spec.name, daemon=True
        )
        self._process.start()
        child.close()
        self.pid = self._process.pid or 0
        self.node_id = ""

    def receive(self) -> list[ShardMessage]:
        out: list[ShardMessage] = []
        try:
            while self._conn.poll():
                out.append(self._conn.recv())
        except (EOFError, OSError):
            pass  # it is gone: `exited` says how
        return out

    def exited(self) -> str | None:
        if self._process.is_alive():
            return None
        self._process.join()
        self._conn.close()
        code = self._process.exitcode
        return f"killed by signal {-code}" if code and code < 0 else f"exit {code}"

    def stop(self, drain_timeout_s: float) -> None:
        with contextlib.suppress(OSError):  # gone already: `exited` says how
            self._conn.send(StopShard(drain_timeout_s))

    def kill(self) -> None:
        self._process.kill()

    def want_snapshots(self, for_s: float) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(SendSnapshots(for_s))

    def made(self, source_ids: Iterable[str]) -> dict[str, int]:
        return self._ledger.seqs(source_ids)

    def track_ids(self, source_ids: Iterable[str]) -> dict[str, int]:
        return self._ledger.track_ids(source_ids)


class ProcessLauncher:
    """Starts shards as processes of this machine, sharing one ledger."""

    def __init__(self, source_ids: list[str]) -> None:
        self.ledger = EmitLedger(source_ids)

    def __call__(self, spec: ShardSpec) -> ShardHandle:
        return ProcessShard(spec, self.ledger)

    def close(self) -> None:
        """Nothing to release: the ledger goes with the supervisor."""
