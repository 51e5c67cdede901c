"""A pipeline run as shards, supervised: processes of this machine, or Ray actors.

    ShardedPipeline ──spawn──► shard-0 process: Pipeline over cam1, cam4 ──┐
                    ──spawn──► shard-1 process: Pipeline over cam2, cam3 ──┼─► Redis
                    ◄── counts every 0.25 s, over a pipe ──────────────────┘

The supervisor checks the pipeline once (model, files, Redis), assigns the sources to
shards (`streamer.shards.assignment`), starts each shard with its launcher (a spawned
process, `streamer.shards.handles`; or a Ray actor, `streamer.shards.ray_actors`) and
watches them from one thread. A shard that dies without a word (kill -9, a crash in a native
library) is started again after a backoff, as the same shard of the same run: its
sources go on after the last `seq` Redis has, and the events it had made but not
delivered are counted lost (the shared `EmitLedger` says how many it made). The other
shards never wait for it. A shard that reports a failure fails the run, as one process
would. The counts of a shard that died are those of its last report.

It has `Pipeline`'s lifecycle: start, stop (draining), join, run, stats.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.config.overrides import with_overrides
from streamer.config.schema import AUTO, PipelineConfig, RayConfig, RedisSinkConfig
from streamer.errors import ConfigError, PipelineFailed
from streamer.events.factory import new_ulid
from streamer.models.sessions import first_usable_provider, plan_workers, usable_cores
from streamer.observability.health import Health, assess
from streamer.pipeline.build import Recording, check
from streamer.pipeline.lifecycle import (
    DRAIN_TIMEOUT_S,
    JOIN_TIMEOUT_S,
    UNSET,
    PipelineState,
    Unset,
    down_budgets,
    redis_url_for,
)
from streamer.pipeline.plans import expected_frames
from streamer.preview.board import decode_jpeg, encode_jpeg
from streamer.preview.drawing import blank, draw_notice
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.stats import Totals, render, sum_totals
from streamer.shards import ray_actors
from streamer.shards.assignment import assign, by_shard
from streamer.shards.handles import Launcher, ProcessLauncher, ShardHandle
from streamer.shards.messages import ShardEnded, ShardProgress, ShardStarted
from streamer.shards.sizing import auto_workers
from streamer.shards.worker import ShardSpec
from streamer.sinks.redis_streams import check_stream_keys, connect_sink, stream_keys
from streamer.sources.video import plan_sources

log = logging.getLogger(__name__)

WATCH_EVERY_S = 0.05
RESTART_INITIAL_S = 0.5  # the first restart of a shard that died; doubles up to:
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a shard that ran this long restarts quickly again
SNAPSHOTS_FOR_S = 5.0  # a look at the preview has shards send snapshots this long
SNAPSHOT_WAIT_S = 3.0  # how long the first look waits for a shard's first snapshot
SNAPSHOTS_ASK_S = 1.0  # how often a shard is asked again while someone looks


@dataclass
class _Shard:
    """A shard and what runs it now (no handle while it waits to restart)."""

    name: str
    sources: list[str]
    config: PipelineConfig
    handle: ShardHandle | None = None
    totals: Totals = field(default_factory=Totals)
    ended: ShardEnded | None = None  # its run ended (well, or with a failure)
    host: str = ""
    pid: int = 0
    restarts: int = 0
    started_at: float = 0.0  # monotonic
    restart_at: float | None = None
    restart_delay_s: float = RESTART_INITIAL_S
    why_restarted: str | None = None
    made_before_death: dict[str, int] = field(default_factory=dict)
    last_track_ids: dict[str, int] = field(default_factory=dict)  # for the next start
    killed: bool = False  # by the supervisor, when it would not stop
    node_id: str = ""  # the Ray node it last ran on
    snapshots_asked_at: float | None = None  # monotonic; None: since its start
    pictures_stale: bool = False  # it died: its sources' pictures are of the dead one


def shard_config(
    config: PipelineConfig, sources: Sequence[str], shard: str, cores: int
) -> PipelineConfig:
    """`config` with only `sources`; file sources paced as the whole pipeline paces them
    (a shard of only files in a live pipeline is still live), a spool file of its own,
    and, unless the file sets them, model workers and threads for `cores` cores: the
    shards of one machine share its cores rather than each taking them all."""
    live = any(s.realtime or not s.is_file for s in config.sources)
    mine = [
        s.model_copy(update={"realtime": True}) if live and s.is_file else s
        for s in config.sources
        if s.id in sources
    ]
    update: dict[str, Any] = {"sources": mine}
    redis = config.redis
    if redis is not None and redis.spool_path is not None:
        path = redis.spool_path
        spool = path.with_name(f"{path.stem}.{shard}{path.suffix}")
        sink = config.sink.model_copy(  # type: ignore[union-attr]
            update={"redis": redis.model_copy(update={"spool_path": spool})}
        )
        update["sink"] = sink
    model = config.model
    if model.workers is None and model.threads is None:
        plan = plan_workers(first_usable_provider(model.providers), None, None, cores)
        # One session on one core: ONNX Runtime would otherwise take every core.
        threads = plan.threads or cores
        update["model"] = model.model_copy(update={"workers": plan.workers, "threads": threads})
    return config.model_copy(update=update)


def _most(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {key: max(a.get(key, 0), b.get(key, 0)) for key in {**a, **b}}


class ShardedPipeline:
    """One pipeline run over several processes of this machine. Not reusable."""

    def __init__(
        self,
        config: PipelineConfig,
        shard_sources: dict[str, list[str]],
        *,
        redis_url: str,
        max_frames: int | None = None,
        duration_s: float | None = None,
        expected_frames: int | None = None,
        verbose: bool = False,
        launcher: Launcher | None = None,
        max_restarts: int = -1,
        cores_per_shard: int | None = None,
        record: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`launcher` starts a shard (default: a process of this machine); `max_restarts`:
        how many times a shard may die and be started again (-1: no limit);
        `cores_per_shard`: the cores each shard's model may use (default: this machine's
        shared out among the shards); `clock`: what the run's timing reads (restart
        backoff, duration, drain); `record`: where each source's processed video goes
        (`Pipeline.from_config`'s `record`)."""
        self.name = config.name
        self.source_ids = [s.id for s in config.sources]
        self._down_budget_s = down_budgets(config)
        self._record = None if record is None else Recording(record, len(config.sources) > 1)
        self._snapshots: dict[str, bytes] = {}  # the latest each shard sent
        self._snapshots_until = 0.0  # monotonic: shards are asked for snapshots until then
        self._clock = clock
        self.run_id = new_ulid()
        self.expected_frames = expected_frames
        self._redis_url = redis_url
        self._max_frames = max_frames
        self._duration_s = duration_s
        self._verbose = verbose
        self._launch = launcher or ProcessLauncher([s.id for s in config.sources])
        busy = [sources for sources in shard_sources.values() if sources]
        cores = cores_per_shard or max(1, usable_cores() // max(1, len(busy)))
        self._max_restarts = max_restarts
        self._shards = [
            _Shard(name, sources, shard_config(config, sources, name, cores))
            for name, sources in shard_sources.items()
            if sources
        ]
        self._lock = threading.Lock()
        self._state = PipelineState.CREATED
        # What shards that died had done, and what they lost; its sources give the order.
        self._retired = Totals(sources=tuple(s.id for s in config.sources))
        self._started_at = 0.0
        self._stopping = False
        self._drain_deadline: float | None = None
        self._failure: PipelineFailed | None = None
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    @classmethod
    def from_config(
        cls,
        config: PipelineConfig,
        *,
        workers: int | str | None = None,
        source: str | Sequence[str] = (),
        model: str | os.PathLike[str] | None = None,
        redis_url: str | Unset | None = UNSET,
        realtime: bool | None = None,
        max_frames: int | None = None,
        duration_s: float | None = None,
        verbose: bool = False,
        ray_address: str | None = None,
        record: str | os.PathLike[str] | None = None,
    ) -> ShardedPipeline:
        """The pipeline of `config` in `workers` shards (default: the file's `workers`),
        checked (model, files, Redis) and ready to start; the other keyword arguments are
        `Pipeline.from_config`'s. `ray_address` (or the file's `ray:`) runs the shards on
        that Ray cluster. StreamerError naming what is wrong."""
        config = with_overrides(
            config,
            sources=(source,) if isinstance(source, str) else tuple(source),
            model=None if model is None else Path(model),
            realtime=realtime,
        )
        url = redis_url_for(config, redis_url)
        if url is None:
            raise ConfigError(
                "workers: shards deliver their events to Redis; a pipeline without one "
                "(sink: none) runs in one process"
            )
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"max_frames must be at least 1, got {max_frames}")
        if duration_s is not None and not duration_s > 0:
            raise ConfigError(f"duration_s must be more than 0, got {duration_s}")
        checked = check(config)
        recording = None if record is None else Recording(Path(record), len(config.sources) > 1)
        if recording is not None:
            recording.check()
        client = connect_sink(url, (config.redis or RedisSinkConfig()).wait_s)
        try:
            template = (config.redis or RedisSinkConfig()).stream
            keys = stream_keys(template, config.name, [s.id for s in config.sources])
            check_stream_keys(client, keys, url)
        finally:
            client.close()
        plans = plan_sources(config, max_frames)
        asked = config.workers if workers is None else workers
        launcher: Launcher | None = None
        max_restarts = -1
        cores_per_shard: int | None = None
        on_ray = ray_address is not None or config.ray is not None
        if on_ray:
            ray_config = config.ray or RayConfig()
            if ray_address is not None:
                ray_config = ray_config.model_copy(update={"address": ray_address})
            launcher = ray_actors.RayLauncher(ray_config)
            max_restarts = ray_config.max_restarts
            cores_per_shard = max(1, int(ray_config.cpus_per_shard))
        if asked == AUTO and on_ray:
            per_shard = (config.ray or RayConfig()).cpus_per_shard
            cpus = ray_actors.cluster_cpus()
            n = len(config.sources) if per_shard == 0 else int(cpus // per_shard)
            n = max(1, min(n, len(config.sources)))
            log.info("workers: auto: %d shard(s) for %.0f CPU(s) of the cluster", n, cpus)
        elif asked == AUTO:
            n = auto_workers(
                sources=len(config.sources),
                cores=os.cpu_count() or 1,
                model_s_per_frame=checked.model.warm_up(1) / 1e9,
                live=any(p.realtime for p in plans),
                gpus=sum(p != "CPUExecutionProvider" for p in checked.model.providers[:1]),
            )
            log.info("workers: auto: %d shard(s)", n)
        elif isinstance(asked, int) and asked >= 1:
            n = asked
        else:
            raise ConfigError(f"workers: must be a whole number from 1, or auto; got {asked!r}")
        names = [f"shard-{i}" for i in range(n)]
        assignment = assign([s.id for s in config.sources], dict.fromkeys(names, 1.0))
        return cls(
            config,
            by_shard(assignment, names),
            redis_url=url,
            max_frames=max_frames,
            duration_s=duration_s,
            expected_frames=expected_frames(plans, checked.file_frames),
            verbose=verbose,
            launcher=launcher,
            max_restarts=max_restarts,
            cores_per_shard=cores_per_shard,
            record=None if recording is None else recording.path,
        )

    def _now(self) -> float:
        return self._clock.monotonic_ns() / 1e9

    @property
    def state(self) -> PipelineState:
        return self._state

    @property
    def shards(self) -> dict[str, list[str]]:
        """Shard name -> its sources."""
        return {s.name: list(s.sources) for s in self._shards}

    def shard_pid(self, name: str) -> int | None:
        """The process id of a shard's current process (None while it restarts)."""
        for shard in self._shards:
            if shard.name == name and shard.handle is not None and shard.handle.pid:
                return shard.handle.pid
        return None

    def stats(self) -> dict[str, Any]:
        """The run's stats summed over its shards, with a `shards` section (DESIGN.md
        section 11); a dead shard's counts as of its last report."""
        with self._lock:
            totals = self._retired + sum_totals(s.totals for s in self._shards)
            wall_s = self._now() - self._started_at if self._started_at else 0.0
            doc = render(totals, wall_s)
            doc["run"] = self.run_id
            doc["shards"] = {s.name: self._shard_doc(s) for s in self._shards}
        return doc

    def totals(self) -> Totals:
        with self._lock:
            return self._retired + sum_totals(s.totals for s in self._shards)

    def health(self) -> Health:
        """`Pipeline.health` over every shard's sources."""
        return assess(self.totals(), self._down_budget_s, self._clock.time(), self._failure)

    def snapshot(self, source_id: str) -> bytes:
        """`Pipeline.snapshot`, as the shard that runs the source last sent it: shards
        send snapshots only for a few seconds after someone asked, once a second. From a
        shard's death until its successor sends pictures, the last one is dimmed, saying
        that the shard restarts."""
        if source_id not in self.source_ids:
            raise KeyError(source_id)
        waited_until = self._now() + SNAPSHOT_WAIT_S
        with self._lock:
            self._snapshots_until = self._now() + SNAPSHOTS_FOR_S
        while True:
            with self._lock:
                jpeg = self._snapshots.get(source_id)
                shard = next(s for s in self._shards if source_id in s.sources)
                stale = shard.pictures_stale
            if jpeg is not None and stale:
                return encode_jpeg(draw_notice(decode_jpeg(jpeg), f"{shard.name} restarting"))
            if jpeg is not None:
                return jpeg
            if self._now() >= waited_until or self._done.is_set():
                return encode_jpeg(draw_notice(blank(), "no picture from its shard yet"))
            time.sleep(WATCH_EVERY_S)

    @staticmethod
    def _shard_doc(shard: _Shard) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "sources": list(shard.sources), "host": shard.host, "pid": shard.pid,
            "restarts": shard.restarts,
        }  # fmt: skip
        node = shard.handle.node_id if shard.handle is not None else shard.node_id
        if node:
            doc["node"] = node  # on a Ray cluster: the node it runs on
        return doc

    def start(self) -> None:
        with self._lock:
            if self._state is not PipelineState.CREATED:
                raise RuntimeError(
                    f"pipeline {self.name} is {self._state}: a pipeline runs once, build a new one"
                )
            self._state = PipelineState.RUNNING
            self._started_at = self._now()
            for shard in self._shards:
                self._spawn(shard)
        self._watcher = threading.Thread(target=self._watch, name="streamer.shards")
        self._watcher.start()
        log.info(
            "pipeline %s running in %d shard(s): %s; run %s",
            self.name,
            len(self._shards),
            "; ".join(f"{s.name}: {', '.join(s.sources)}" for s in self._shards),
            self.run_id,
        )

    def stop(self, drain_timeout_s: float = DRAIN_TIMEOUT_S, *, wait: bool = True) -> None:
        """Stop every shard: what their sources decoded goes on to Redis for up to
        `drain_timeout_s`, then they stop at once. Calling it again only shortens the drain."""
        with self._lock:
            if self._state is PipelineState.CREATED:
                self._launch.close()
                self._state = PipelineState.STOPPED
                self._done.set()
                return
            if self._state is PipelineState.RUNNING:
                self._state = PipelineState.DRAINING
            self._stopping = True
            deadline = self._now() + max(0.0, drain_timeout_s)
            if self._drain_deadline is None or deadline < self._drain_deadline:
                self._drain_deadline = deadline
            for shard in self._shards:
                shard.restart_at = None  # a shard waiting to restart stays down
                if shard.handle is not None:
                    shard.handle.stop(max(0.0, drain_timeout_s))
        if wait:
            self._wait_done(None)

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until every shard has ended: False when `timeout_s` passed first; raises
        PipelineFailed when a shard failed."""
        if self._state is PipelineState.CREATED:
            raise RuntimeError(f"pipeline {self.name} has not started")
        if not self._wait_done(timeout_s):
            return False
        if self._failure is not None:
            raise self._failure
        return True

    def run(self) -> dict[str, Any]:
        """Start, wait until every shard has ended, and return the stats."""
        self.start()
        try:
            while not self.join(WATCH_EVERY_S * 4):
                pass
        except KeyboardInterrupt:
            self.stop()
            raise
        return self.stats()

    def threads_alive(self) -> list[str]:
        """Shards still running after the run ended (none: they are killed)."""
        return [s.name for s in self._shards if s.handle is not None]

    def __enter__(self) -> ShardedPipeline:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.stop(0.0 if exc is not None else DRAIN_TIMEOUT_S)
        if self._state is PipelineState.FAILED and exc is None:
            self.join()

    def _wait_done(self, timeout_s: float | None) -> bool:
        if not self._done.wait(timeout_s):
            return False
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
        return True

    def _spawn(self, shard: _Shard) -> None:
        spec = ShardSpec(
            name=shard.name,
            config=shard.config,
            redis_url=self._redis_url,
            run_id=self.run_id,
            max_frames=self._max_frames,
            restarted=shard.why_restarted,
            last_track_ids=shard.last_track_ids,
            verbose=self._verbose,
            record=self._record,
        )
        shard.snapshots_asked_at = None
        shard.handle = self._launch(spec)
        shard.pid = shard.handle.pid
        shard.started_at = self._now()
        shard.restart_at = None

    def _watch(self) -> None:
        while True:
            now = self._now()
            with self._lock:
                for shard in self._shards:
                    self._tend(shard, now)
                if all(s.handle is None and s.restart_at is None for s in self._shards):
                    break
                duration = self._duration_s
                running = self._state is PipelineState.RUNNING
            if running and duration is not None and now - self._started_at >= duration:
                log.info("%s: --duration reached; stopping", self.name)
                self.stop(DRAIN_TIMEOUT_S, wait=False)
            deadline = self._drain_deadline
            if deadline is not None and now > deadline + JOIN_TIMEOUT_S:
                self._kill_all("did not stop in time")
            time.sleep(WATCH_EVERY_S)
        self._launch.close()
        with self._lock:
            self._state = PipelineState.FAILED if self._failure else PipelineState.STOPPED
        self._done.set()

    def _tend(self, shard: _Shard, now: float) -> None:
        """Read what a shard said; restart it when it died, when its turn has come."""
        handle = shard.handle
        if handle is None:
            if shard.restart_at is not None and now >= shard.restart_at and not self._stopping:
                self._spawn(shard)
            return
        for message in handle.receive():
            self._on_message(shard, message)
        how = handle.exited()
        if how is None:
            asked = shard.snapshots_asked_at
            if now < self._snapshots_until and (asked is None or now - asked >= SNAPSHOTS_ASK_S):
                handle.want_snapshots(SNAPSHOTS_FOR_S)
                shard.snapshots_asked_at = now
            return
        for message in handle.receive():  # what it said last
            self._on_message(shard, message)
        shard.handle = None
        shard.node_id = handle.node_id
        ended = shard.ended
        if ended is not None:
            if ended.failure is not None and self._failure is None:
                self._failure = PipelineFailed(f"{shard.name}: {ended.failure}")
                log.error("%s failed: %s; stopping the run", shard.name, ended.failure)
                self._stop_all_locked()
            return
        self._died(shard, handle, how, now)

    def _on_message(self, shard: _Shard, message: object) -> None:
        if isinstance(message, ShardProgress):
            shard.totals = message.totals
            self._snapshots.update(message.snapshots)
            shard.pictures_stale = shard.pictures_stale and not message.snapshots
        elif isinstance(message, ShardStarted):
            shard.host, shard.pid = message.host, message.pid
            if shard.handle is not None:
                shard.handle.pid = message.pid
            lost = sum(
                max(0, made - message.last_seqs.get(sid, 0))
                for sid, made in shard.made_before_death.items()
            )
            shard.made_before_death = {}
            if lost:
                log.warning(
                    "%s: %d event(s) the shard that died had made were not delivered: lost",
                    shard.name,
                    lost,
                )
                self._retired = self._retired.with_lost(lost)
        elif isinstance(message, ShardEnded):
            shard.totals = message.totals
            shard.ended = message

    def _died(self, shard: _Shard, handle: ShardHandle, how: str, now: float) -> None:
        """A shard ended without saying its run ended: start it again, after a backoff."""
        self._retired = self._retired + shard.totals.ended()
        shard.totals = Totals()
        shard.pictures_stale = True
        # Kept across deaths: a shard that dies before it said anything made nothing new.
        shard.made_before_death = _most(shard.made_before_death, handle.made(shard.sources))
        shard.last_track_ids = _most(shard.last_track_ids, handle.track_ids(shard.sources))
        if self._stopping:
            log.error("%s (pid %d) died while stopping (%s)", shard.name, shard.pid, how)
            return
        if 0 <= self._max_restarts <= shard.restarts:
            if self._failure is None:
                self._failure = PipelineFailed(
                    f"{shard.name} died ({how}) after {shard.restarts} restart(s); "
                    f"max_restarts is {self._max_restarts}"
                )
                log.error("%s; stopping the run", self._failure)
                self._stop_all_locked()
            return
        if now - shard.started_at >= HEALTHY_AFTER_S:
            shard.restart_delay_s = RESTART_INITIAL_S
        delay = shard.restart_delay_s
        shard.restart_delay_s = min(delay * 2, RESTART_MAX_S)
        shard.restart_at = now + delay
        shard.restarts += 1
        shard.why_restarted = f"{shard.name} restarted: it died ({how})"
        log.warning(
            "%s (pid %d on %s: %s) died (%s); restarting it in %.1f s",
            shard.name, shard.pid, shard.host or "?", ", ".join(shard.sources), how, delay,
        )  # fmt: skip

    def _stop_all_locked(self) -> None:
        self._stopping = True
        if self._state is PipelineState.RUNNING:
            self._state = PipelineState.DRAINING
        self._drain_deadline = self._drain_deadline or self._now() + DRAIN_TIMEOUT_S
        for shard in self._shards:
            shard.restart_at = None
            if shard.handle is not None:
                shard.handle.stop(DRAIN_TIMEOUT_S)

    def _kill_all(self, why: str) -> None:
        with self._lock:
            for shard in self._shards:
                if shard.handle is not None and not shard.killed:
                    shard.killed = True
                    log.error("%s (pid %d) %s: killing it", shard.name, shard.pid, why)
                    shard.handle.kill()
