"""The pipeline as a Python object: built, started, read, stopped and joined.

    created ──start()──► running ──stop() or duration_s──► draining ──► stopped
                            └──────── a stage, sink, source or on_event fails ──► failed

`Pipeline.from_file` and `Pipeline.from_config` do the I/O of building (loading the
model, probing the files, connecting to Redis, warming up); the constructor only takes
the parts, so tests can hand it parts of their own. Once started, a watcher thread ends
the run after `duration_s`, turns a drain that takes too long into a halt, and, when
every thread has ended, counts what the queues still held and settles the final state.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict

from typing_extensions import Unpack

from streamer.config import load_config, with_overrides
from streamer.config.loader import naming_file
from streamer.config.schema import PipelineConfig
from streamer.enums import StrEnum
from streamer.errors import ConfigError, PipelineFailed, StreamerError
from streamer.events.event import Event
from streamer.observability.health import Health, assess
from streamer.pipeline.build import Recording, build
from streamer.pipeline.parts import Parts
from streamer.quality.profiles import SourceProfile
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.messages import DropReason
from streamer.runtime.queues import POLL_S
from streamer.runtime.stats import Totals
from streamer.runtime.threads import run_stage
from streamer.sinks.local import EventCallback

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
REDIS_URL_VARIABLE = "STREAMER_REDIS_URL"
DRAIN_TIMEOUT_S = 10.0  # how long in-flight frames may take to drain after a stop
JOIN_TIMEOUT_S = 10.0  # after a halt, how long threads may take to end (a sink may be writing)
EVENTS_MAX_QUEUED = 1024


class PipelineState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    DRAINING = "draining"  # sources stopped; what they decoded goes on to the sinks
    STOPPED = "stopped"
    FAILED = "failed"


class Unset(Enum):
    UNSET = "unset"


UNSET = Unset.UNSET


class Overrides(TypedDict, total=False):
    """The keyword arguments of `Pipeline.from_config` (and so of `from_file`)."""

    source: str | Sequence[str]
    model: str | os.PathLike[str] | None
    redis_url: str | Unset | None
    realtime: bool | None
    max_frames: int | None
    duration_s: float | None
    on_event: EventCallback | None
    record: str | os.PathLike[str] | None
    clock: Clock


class Pipeline:
    """One pipeline run. Not reusable: a stopped pipeline cannot start again."""

    def __init__(
        self,
        name: str,
        run_id: str,
        parts: Parts,
        *,
        duration_s: float | None = None,
        expected_frames: int | None = None,
        down_budget_s: Mapping[str, float] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`down_budget_s`: per source, how long it may be without a connection before
        `health()` calls it unhealthy (default: not at all)."""
        self.name = name
        self.run_id = run_id
        self.expected_frames = expected_frames  # offline: frames the run will decode
        self._parts = parts
        self._supervisor = parts.supervisor
        self._duration_ns = None if duration_s is None else int(duration_s * 1e9)
        self._down_budget_s = dict(down_budget_s or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._state = PipelineState.CREATED
        self._started_ns = 0
        self._drain_deadline_ns: int | None = None
        self._failure: PipelineFailed | None = None
        self._wake = threading.Event()  # the watcher looks again at once
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Unpack[Overrides]) -> Pipeline:
        """The pipeline of a YAML file, built and ready to start; StreamerError (a
        ConfigError, ModelError, SourceError, RedisUnavailable or SinkError) naming the
        file and field, the model, the video or the Redis URL that is wrong. The keyword
        arguments are `from_config`'s."""
        path = Path(path)
        config = load_config(path)
        with naming_file(path):
            return cls.from_config(config, **overrides)

    @classmethod
    def from_config(
        cls,
        config: PipelineConfig,
        *,
        source: str | Sequence[str] = (),
        model: str | os.PathLike[str] | None = None,
        redis_url: str | Unset | None = UNSET,
        realtime: bool | None = None,
        max_frames: int | None = None,
        duration_s: float | None = None,
        on_event: EventCallback | None = None,
        record: str | os.PathLike[str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> Pipeline:
        """The pipeline of a config already read (see `streamer.config`), built and ready to
        start; StreamerError naming what is wrong.

        The keyword arguments are `streamer run`'s flags: `source` replaces the sources
        with one URI, or replaces or adds the source of each "ID=URI"; `model` replaces
        the model file; `redis_url` replaces the Redis URL (None: no Redis, events only in
        process); `realtime` paces files like cameras (True) or reads every frame as fast
        as possible (False); `max_frames` stops each source after that many frames;
        `duration_s` stops the run after that long; `record` writes each source's
        processed video, with its boxes, zones and lines drawn, to that file (one file per
        source when there are several: `out.mp4` -> `out.cam1.mp4`). `on_event` is called
        with each event, in order, on the pipeline's delivery thread; `clock` is what
        timing reads.
        """
        config = with_overrides(
            config,
            sources=(source,) if isinstance(source, str) else tuple(source),
            model=None if model is None else Path(model),
            realtime=realtime,
        )
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"max_frames must be at least 1, got {max_frames}")
        if duration_s is not None and not duration_s > 0:
            raise ConfigError(f"duration_s must be more than 0, got {duration_s}")
        built = build(
            config,
            redis_url=redis_url_for(config, redis_url),
            max_frames=max_frames,
            on_event=on_event,
            clock=clock,
            record=None if record is None else Recording(Path(record), len(config.sources) > 1),
        )
        return cls(
            config.name,
            built.run_id,
            built.parts,
            duration_s=duration_s,
            expected_frames=built.expected_frames,
            down_budget_s=down_budgets(config),
            clock=clock,
        )

    @property
    def state(self) -> PipelineState:
        return self._state

    @property
    def source_ids(self) -> list[str]:
        return [s.id for s in self._parts.sources]

    def stats(self) -> dict[str, Any]:
        """What the run did so far: the document `streamer run --stats-json` writes."""
        return self._parts.stats.snapshot()

    def totals(self) -> Totals:
        """The counts of `stats()`, as a value that adds up with another run's."""
        return self._parts.stats.totals()

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's class names."""
        return self._parts.labels

    def profiles(self) -> dict[str, SourceProfile]:
        """Each source's reference profile as it is now (learnt, loaded, or as far as
        learnt): what `streamer profile` writes. Empty without a `health:` section."""
        return self._parts.watchers.profiles()

    def health(self) -> Health:
        """Whether every source is connected or retrying within its budget (its
        `reconnect.max_delay_s`), the sink delivers and the run has not failed."""
        return assess(self.totals(), self._down_budget_s, self._clock.time(), self._failure)

    def snapshot(self, source_id: str) -> bytes:
        """The latest processed frame of `source_id` as JPEG, with its boxes, track ids,
        zones and lines drawn; dimmed, with the reason, while the source is down.
        KeyError for a source the pipeline does not have."""
        conditions = self.health().sources
        if source_id not in conditions:
            raise KeyError(source_id)
        return self._parts.board.snapshot(source_id, conditions[source_id].notice)

    def start(self) -> None:
        """Start every thread and return; RuntimeError when started before."""
        with self._lock:
            if self._state is not PipelineState.CREATED:
                raise RuntimeError(
                    f"pipeline {self.name} is {self._state}: a pipeline runs once, build a new one"
                )
            if self._parts.local.counts_delivery and not self._parts.local.has_consumers:
                raise StreamerError(
                    f"pipeline {self.name} has no Redis (sink: none) and nothing in process "
                    "reads its events: pass on_event, or iterate over events()"
                )
            self._state = PipelineState.RUNNING
            self._started_ns = self._clock.monotonic_ns()
        parts, sup = self._parts, self._supervisor
        parts.stats.start_clock()  # the run's clock starts once all is ready
        ids = self.source_ids
        for source in parts.sources:
            sup.spawn(f"streamer.src.{source.id}", source.run)
        for st in parts.stages:
            loop = functools.partial(run_stage, st.stage, st.inbox, st.outbox, ids, sup)
            sup.spawn(f"streamer.{st.stage.name}", loop)
        for sink in parts.sinks:
            sup.spawn(f"streamer.{sink.name}", sink.run)
        self._watcher = threading.Thread(target=self._watch, name="streamer.watch")
        self._watcher.start()
        log.info("pipeline %s running: %d source(s), run %s", self.name, len(ids), self.run_id)

    def stop(self, drain_timeout_s: float = DRAIN_TIMEOUT_S, *, wait: bool = True) -> None:
        """Stop the sources; what they decoded already goes on to the sinks for up to
        `drain_timeout_s`, then every thread stops at once (what was still in flight is
        counted as dropped or lost). `stop(0)` stops at once. Calling it again only ever
        shortens the drain. `wait`: return once every thread has ended, except when called
        from `on_event` or inside a loop over `events()`, which must go on for the run to
        end."""
        with self._lock:
            if self._state is PipelineState.CREATED:
                self._close_unstarted()
                return
            if self._state is PipelineState.RUNNING:
                self._state = PipelineState.DRAINING
            if not self._done.is_set():
                deadline = self._clock.monotonic_ns() + int(max(0.0, drain_timeout_s) * 1e9)
                if self._drain_deadline_ns is None or deadline < self._drain_deadline_ns:
                    self._drain_deadline_ns = deadline
                self._supervisor.stop_sources.set()
                if drain_timeout_s <= 0:
                    self._supervisor.halt.set()
        self._wake.set()
        # Called from on_event, or inside a loop over events(): the run cannot end while
        # this thread waits, since it is the one that takes the events. It ends once the
        # caller goes on (the loop then ends after the last event).
        inside = self._supervisor.owns_current_thread() or self._parts.local.reads_here()
        if wait and not inside:
            self._wait_done(None)

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until the run has ended: False when `timeout_s` passed first; raises
        PipelineFailed, with the cause, when it failed."""
        if self._state is PipelineState.CREATED:
            raise RuntimeError(f"pipeline {self.name} has not started")
        if not self._wait_done(timeout_s):
            return False
        if self._failure is not None:
            raise self._failure
        return True

    def run(self) -> dict[str, Any]:
        """Start, wait until the sources end (or `duration_s` passes), and return the
        stats; raises PipelineFailed when the run failed. Ctrl-C stops it (draining)."""
        self.start()
        try:
            while not self.join(POLL_S):
                pass
        except KeyboardInterrupt:
            self.stop()
            raise
        return self.stats()

    def events(self, max_queued: int = EVENTS_MAX_QUEUED) -> Iterator[Event]:
        """The pipeline's events, in order for each source, ending after its last one.

        Iterating starts the pipeline when it has not started; an iterator made after
        the start gets the events from then on. Up to `max_queued` events wait for the
        reader; beyond that the pipeline waits too (nothing is lost: live sources drop
        frames before inference instead, counted as drops). Leaving the loop early
        unsubscribes; the pipeline goes on until stopped.
        """
        local = self._parts.local
        subscription = local.subscribe(max_queued)

        def iterate() -> Iterator[Event]:
            try:
                if self._state is PipelineState.CREATED:
                    self.start()
                yield from subscription
            finally:  # closed, or left early
                local.unsubscribe(subscription)

        iterator = iterate()
        # Also when it is dropped without ever being started: a reader that went away
        # must not hold the pipeline up.
        weakref.finalize(iterator, local.unsubscribe, subscription)
        return iterator

    def _wait_done(self, timeout_s: float | None) -> bool:
        """Wait for the run to end, and its watcher thread with it."""
        if not self._done.wait(timeout_s):
            return False
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
        return True

    def threads_alive(self) -> list[str]:
        """Threads still running: after a failed join, those stuck in a library call."""
        return self._supervisor.alive()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop (at once when the block raised) and wait for every thread. A failure of
        the run is raised, unless the block is raising already."""
        self.stop(0.0 if exc is not None else DRAIN_TIMEOUT_S)
        if self._state is PipelineState.FAILED and exc is None:
            self.join()

    def _close_unstarted(self) -> None:
        """Stopped before it started: release what building opened."""
        for st in self._parts.stages:
            st.stage.close(halted=False)
        for sink in self._parts.sinks:
            sink.close()
        self._parts.local.end()
        self._state = PipelineState.STOPPED
        self._done.set()

    def _watch(self) -> None:
        sup = self._supervisor
        halted_at: float | None = None
        stuck: list[str] = []
        while sup.alive():
            now = self._clock.monotonic_ns()
            duration = self._duration_ns
            if (
                duration is not None
                and self._state is PipelineState.RUNNING
                and now - self._started_ns >= duration
            ):
                log.info("%s: --duration reached; stopping", self.name)
                self.stop(DRAIN_TIMEOUT_S, wait=False)
            drain_deadline = self._drain_deadline_ns
            if drain_deadline is not None and now >= drain_deadline and not sup.halt.is_set():
                log.warning("draining took too long; stopping now")
                sup.halt.set()
            if sup.halt.is_set():
                # Real time: how long threads take to notice is no matter of the clock.
                halted_at = halted_at or time.monotonic()
                if time.monotonic() - halted_at > JOIN_TIMEOUT_S:
                    stuck = sup.alive()
                    break
            self._wake.wait(POLL_S)
            self._wake.clear()
        self._settle(stuck)

    def _settle(self, stuck: list[str]) -> None:
        """Every thread has ended, but `stuck`: count what is left, decide the state."""
        parts = self._parts
        if not stuck:
            for queue in parts.queues:
                queue.discard_all(DropReason.SHUTDOWN)
        parts.local.end()
        failure = self._supervisor.failure
        if failure is None and stuck:
            failure = PipelineFailed(f"threads still running at exit: {', '.join(stuck)}")
        failed = [s for s in parts.sources if s.failure is not None]
        if failure is None and failed:
            failure = PipelineFailed(f"source(s) failed: {', '.join(s.id for s in failed)}")
            failure.__cause__ = failed[0].failure
        with self._lock:
            self._failure = failure
            self._state = PipelineState.FAILED if failure else PipelineState.STOPPED
        self._done.set()


def down_budgets(config: PipelineConfig) -> dict[str, float]:
    """How long each source may retry before it counts as down: a whole backoff cycle."""
    return {s.id: s.reconnect.max_delay_s for s in config.sources}


def redis_url_for(config: PipelineConfig, given: str | Unset | None) -> str | None:
    """The Redis to write to: `given` (None: none); else, unless the file says `sink:
    none`, $STREAMER_REDIS_URL, the file's sink.redis.url, or the local default."""
    if given is not UNSET:
        return given
    if config.redis is None:
        return None
    return os.environ.get(REDIS_URL_VARIABLE) or config.redis.url or DEFAULT_REDIS_URL
