"""Shards as Ray actors: one pipeline run over the machines of a Ray cluster.

An optional extra (`pip install 'streamer[ray]'`). The supervisor (`ShardedPipeline`,
the `streamer run --ray ADDRESS` process) is the Ray driver: each shard is an actor
with its resource request (CPUs, GPUs, memory), placed by Ray and spread over the
nodes. When an actor dies (its process crashed, or its node was lost) the supervisor
starts a new one for the same shard, which Ray places on a node that is alive: only
that shard's cameras move, and they go on with the same run and seq. Actors talk to
the supervisor through method calls: `poll` returns the shard's counts every 0.25 s.

Unlike a process of the supervisor's machine, an actor shares no memory with the
supervisor: the events a lost shard had made are known as of its last report, so the
loss counted for it is a lower bound (at most 0.25 s of events more).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import Any

from streamer.config.schema import RayConfig
from streamer.errors import ConfigError, StreamerError
from streamer.observability import logs
from streamer.observability.redact import redact
from streamer.shards.ledger import EmitLedger
from streamer.shards.messages import ShardEnded, ShardMessage, ShardProgress, ShardStarted
from streamer.shards.worker import REPORT_EVERY_S, ShardRunner, ShardSpec

log = logging.getLogger(__name__)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "ray: Ray is not installed; install the extra: pip install 'streamer[ray]'"
        ) from None
    return ray


def connect(address: str) -> None:
    """Join the Ray cluster at `address` as its driver; StreamerError when it cannot."""
    ray = import_ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StreamerError(f"ray: cannot join the cluster at {redact(address)} ({exc})") from None


def cluster_cpus() -> float:
    return float(import_ray().cluster_resources().get("CPU", 0.0))


class ShardActor:
    """A shard inside a Ray actor (made remote by `RayLauncher`)."""

    def __init__(self, spec: ShardSpec) -> None:
        logs.setup(spec.verbose, spec.name)
        ledger = EmitLedger([s.id for s in spec.config.sources])
        self._runner = ShardRunner(spec, ledger)

    def start(self) -> ShardStarted | ShardEnded:
        return self._runner.start()

    def poll(self, timeout_s: float) -> ShardProgress | ShardEnded:
        return self._runner.poll(timeout_s)

    def stop(self, drain_timeout_s: float) -> None:
        self._runner.stop(drain_timeout_s)

    def want_snapshots(self, for_s: float) -> None:
        self._runner.want_snapshots(for_s)

    def node(self) -> tuple[str, str]:
        """The host name and Ray node id this actor runs on."""
        ray = import_ray()
        return socket.gethostname(), ray.get_runtime_context().get_node_id()


class RayShard:
    """The supervisor's handle on a shard actor: one call in flight at a time (start,
    then poll after poll), read without blocking."""

    def __init__(self, actor: Any) -> None:
        self._ray = import_ray()
        self._actor = actor
        self._pending: Any = actor.start.remote()
        self._node: Any = actor.node.remote()
        self._exit: str | None = None
        self._seqs: dict[str, int] = {}
        self._track_ids: dict[str, int] = {}
        self.pid = 0
        self.node_id = ""

    def receive(self) -> list[ShardMessage]:
        ray = self._ray
        out: list[ShardMessage] = []
        if self._node is not None and ray.wait([self._node], timeout=0)[0]:
            try:
                self.node_id = ray.get(self._node)[1]
            except ray.exceptions.RayError:
                log.debug("a shard actor died before it said where it runs")
            self._node = None
        while self._pending is not None and ray.wait([self._pending], timeout=0)[0]:
            try:
                message = ray.get(self._pending)
            except ray.exceptions.ActorUnavailableError:
                # Unreachable for now (its node misses heartbeats): it may come back, or
                # be declared dead, which the next call says.
                self._pending = self._actor.poll.remote(REPORT_EVERY_S)
                break
            except ray.exceptions.RayActorError as exc:
                self._exit = _how_it_died(exc)
                self._pending = None
                self.kill()  # should it come back after all, it must not run twice
                break
            out.append(message)
            if isinstance(message, ShardProgress):
                self._seqs.update(message.seqs)
                self._track_ids.update(message.track_ids)
            if isinstance(message, ShardEnded):
                self._pending = None
                self._exit = "ended"
                ray.kill(self._actor, no_restart=True)  # its run is over: free its resources
                break
            self._pending = self._actor.poll.remote(REPORT_EVERY_S)
        return out

    def exited(self) -> str | None:
        return self._exit

    def stop(self, drain_timeout_s: float) -> None:
        if self._exit is None:
            self._actor.stop.remote(drain_timeout_s)

    def kill(self) -> None:
        self._ray.kill(self._actor, no_restart=True)

    def want_snapshots(self, for_s: float) -> None:
        if self._exit is None:
            self._actor.want_snapshots.remote(for_s)

    def made(self, source_ids: Iterable[str]) -> dict[str, int]:
        return {sid: self._seqs.get(sid, 0) for sid in source_ids}

    def track_ids(self, source_ids: Iterable[str]) -> dict[str, int]:
        return {sid: self._track_ids.get(sid, 0) for sid in source_ids}


def _how_it_died(exc: Exception) -> str:
    text = str(exc)
    if "node" in text.lower() and ("died" in text.lower() or "dead" in text.lower()):
        return "its node was lost"
    return f"its actor died ({type(exc).__name__})"


class RayLauncher:
    """Starts shards as Ray actors with the resources `config` asks for each; joins the
    cluster first, and leaves it on `close` if it joined."""

    def __init__(self, config: RayConfig) -> None:
        ray = import_ray()
        self._joined = not ray.is_initialized()
        connect(config.address)
        options: dict[str, Any] = {
            "num_cpus": config.cpus_per_shard,
            "num_gpus": config.gpus_per_shard,
            "max_restarts": 0,  # the supervisor restarts a shard: it must know it did
            "scheduling_strategy": "SPREAD",
        }
        if config.memory_mb_per_shard is not None:
            options["memory"] = config.memory_mb_per_shard * 1024 * 1024
        self._actor_class = ray.remote(ShardActor).options(**options)

    def __call__(self, spec: ShardSpec) -> RayShard:
        return RayShard(self._actor_class.remote(spec))

    def close(self) -> None:
        if self._joined:
            import_ray().shutdown()
