"""Builds a pipeline from its config, checks that the parts fit, and runs its threads.

    source threads ─decoded─► preprocess ─prepared─► infer ─inferred─► postprocess ─events─► sink

Everything that can be wrong with the user's files (the model, the videos, the class
filter, Redis) is checked when a `Pipeline` is made, before any thread starts.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass

from streamer.batching import InferenceStage
from streamer.config import PipelineConfig
from streamer.deadlines import WorkEstimate
from streamer.decode import SourcePlan, VideoSource, file_options, probe_file
from streamer.errors import ConfigError
from streamer.events import EventFactory, new_ulid
from streamer.geometry import polygon_contour
from streamer.messages import DropReason, Event
from streamer.models import Model
from streamer.postprocess import DetectionRules, PostprocessStage
from streamer.preprocess import PreprocessStage
from streamer.queues import Overflow, StageQueue, is_control
from streamer.rules import LineRule, ObjectRules, ZoneRule
from streamer.runtime import Stage, Supervisor, run_stage
from streamer.sink import RedisSink, check_stream_keys, connect
from streamer.spool import open_spool
from streamer.stats import RunStats
from streamer.tracking import Tracker, TrackerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuePlan:
    size: int
    overflow: Overflow


def plan_sources(config: PipelineConfig, max_frames: int | None) -> list[SourcePlan]:
    """Decide per source whether it runs live (paced, with deadlines) or offline.

    Live URLs are always live. Files are offline unless asked otherwise; in a pipeline
    that also has live sources they are paced too, since the queues in front of the
    model are leaky there and would drop an offline file's frames.
    """
    live_anywhere = any(s.realtime or not s.is_file for s in config.sources)
    plans = []
    for i, s in enumerate(config.sources):
        if not s.is_file and s.realtime is False:
            raise ConfigError(f"sources[{i}].realtime: a live URL is always realtime")
        if s.is_file and s.realtime is False and live_anywhere:
            raise ConfigError(
                f"sources[{i}].realtime: false cannot be mixed with live sources in one pipeline"
            )
        realtime = live_anywhere if s.realtime is None else s.realtime
        latency = s.max_latency_ms or config.realtime.max_latency_ms
        plans.append(
            SourcePlan(
                s, realtime=realtime or not s.is_file, max_latency_ms=latency, max_frames=max_frames
            )
        )
    return plans


def plan_queues(config: PipelineConfig, live: bool, max_batch: int) -> dict[str, QueuePlan]:
    """Each queue's size and overflow: live pipelines keep the freshest frames before
    inference and lose nothing after it; offline pipelines lose nothing anywhere."""
    n = len(config.sources)
    leaky = Overflow.DROP_OLDEST if live else Overflow.BLOCK
    defaults = {
        "decoded": QueuePlan(2 * n if live else 8 * n, leaky),
        # Live: one batch waiting at most, so the model always gets the freshest frames.
        "prepared": QueuePlan(max_batch if live else 2 * max_batch, leaky),
        "inferred": QueuePlan(4 * max_batch, Overflow.BLOCK),
        "events": QueuePlan(4096, Overflow.BLOCK),
    }
    plans = {}
    for name, default in defaults.items():
        given = getattr(config.queues, name)
        overflow = getattr(given, "overflow", None) or default.overflow
        plans[name] = QueuePlan(given.size or default.size, overflow)
    return plans


def load_model(config: PipelineConfig) -> Model:
    m = config.model
    return Model.load(
        m.path,
        format=m.family,
        labels=m.labels,
        imgsz=m.input_size,
        providers=tuple(m.providers),
        threads=m.threads,
        workers=m.workers,
        device=m.device,
        fp16=m.fp16,
        engine_cache=m.engine_cache,
    )


def detection_rules(config: PipelineConfig, model: Model) -> DetectionRules:
    m = config.model
    class_ids = _class_ids(m.classes, model, "model.classes")
    return DetectionRules(m.confidence, m.iou, m.max_detections, class_ids)


def _class_ids(labels: list[str] | None, model: Model, where: str) -> frozenset[int] | None:
    if labels is None:
        return None
    known = model.spec.labels
    unknown = [name for name in labels if name not in known]
    if unknown:
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise ConfigError(f"{where}: unknown label {unknown[0]!r} (the model has: {shown})")
    return frozenset(known.index(name) for name in labels)


def region_rules(config: PipelineConfig, model: Model) -> tuple[list[ZoneRule], list[LineRule]]:
    """The pipeline's zones and lines, with their labels checked against the model."""
    zones = [
        ZoneRule(
            z.name, polygon_contour(z.polygon), _class_ids(z.labels, model, f"zones[{i}].labels"),
            z.anchor, z.hysteresis,
        )
        for i, z in enumerate(config.zones)
    ]  # fmt: skip
    lines = [
        LineRule(
            ln.name, ln.points[0], ln.points[1],
            _class_ids(ln.labels, model, f"lines[{i}].labels"), ln.anchor, ln.hysteresis,
        )
        for i, ln in enumerate(config.lines)
    ]  # fmt: skip
    return zones, lines


def tracker_settings(config: PipelineConfig) -> TrackerSettings:
    t = config.tracking
    high = t.high_confidence if t.high_confidence is not None else config.model.confidence
    return TrackerSettings(
        high_confidence=high,
        low_confidence=min(t.low_confidence, high),
        match_iou=t.match_iou,
        confirm_hits=t.confirm_hits,
        confirm_s=t.confirm_s,
        lost_after_s=t.lost_after_s,
    )


def object_rules(
    config: PipelineConfig, zones: list[ZoneRule], lines: list[LineRule]
) -> dict[str, ObjectRules]:
    """A tracker and the zones and lines that apply, per source; none when no event needs
    tracking."""
    if not config.tracks_objects:
        return {}
    settings = tracker_settings(config)
    # A zone and a line may share a name: each kind is looked up on its own.
    zone_sources = {z.name: z.sources for z in config.zones}
    line_sources = {ln.name: ln.sources for ln in config.lines}

    def on(sources: list[str] | None, source_id: str) -> bool:
        return sources is None or source_id in sources

    return {
        s.id: ObjectRules(
            Tracker(settings),
            [z for z in zones if on(zone_sources[z.name], s.id)],
            [ln for ln in lines if on(line_sources[ln.name], s.id)],
        )
        for s in config.sources
    }


@dataclass(frozen=True)
class Checked:
    model: Model
    rules: DetectionRules
    zones: list[ZoneRule]
    lines: list[LineRule]
    file_frames: dict[str, int | None]  # frames each file source announces (None: unknown)


def check(config: PipelineConfig) -> Checked:
    """Everything `streamer validate` checks: the model, the labels named in the class
    filter, zones and lines, the video files."""
    model = load_model(config)
    rules = detection_rules(config, model)
    if config.tracks_objects:
        # The tracker also takes weak boxes, to keep tracks alive through occlusions.
        low = tracker_settings(config).low_confidence
        rules = dataclasses.replace(rules, confidence=min(rules.confidence, low))
    zones, lines = region_rules(config, model)
    plan_sources(config, None)
    frames = {s.id: probe_file(s.uri, file_options(s)) for s in config.sources if s.is_file}
    return Checked(model, rules, zones, lines, frames)


def _expected_frames(plans: list[SourcePlan], file_frames: dict[str, int | None]) -> int | None:
    """How many frames an offline run will decode in all, when every source says."""
    total = 0
    for plan in plans:
        frames = file_frames.get(plan.config.id)
        if plan.realtime or frames is None:
            return None
        total += min(frames, plan.max_frames or frames)
    return total


class Pipeline:
    def __init__(
        self, config: PipelineConfig, redis_url: str, max_frames: int | None = None
    ) -> None:
        """Check every part and connect to Redis; StreamerError when something does not fit."""
        self.config = config
        checked = check(config)
        self.model = checked.model
        self.run_id = new_ulid()
        self._plans = plan_sources(config, max_frames)
        self.expected_frames = _expected_frames(self._plans, checked.file_frames)
        source_ids = [p.config.id for p in self._plans]
        self.supervisor = Supervisor()
        client = connect(redis_url)
        redis_cfg = config.sink.redis
        spool = open_spool(redis_cfg.spool_path, redis_cfg.spool_max_events)
        keys = {redis_cfg.stream.format(pipeline=config.name, source=sid) for sid in source_ids}
        # Also the streams of events an earlier run left in the spool file.
        check_stream_keys(client, sorted(keys | spool.keys()), redis_url)

        spec_batch = self.model.spec.batch
        max_batch = config.model.batch.max_size
        if spec_batch is not None:
            max_batch = min(max_batch, spec_batch)
        live = any(p.realtime for p in self._plans)
        queues = plan_queues(config, live, max_batch)
        self._queues = {name: self._make_queue(name, plan) for name, plan in queues.items()}

        estimate = WorkEstimate()
        self.stats = RunStats(source_ids)
        self.stats.providers = self.model.providers
        self.stats.count_regions([z.name for z in config.zones], [ln.name for ln in config.lines])
        inference = InferenceStage(
            self.model,
            max_batch,
            config.model.batch.max_wait_ms,
            estimate,
            self.stats,
            wake=self._queues["prepared"].wake,
        )
        if live:
            warm_up_ns = inference.warm_up()
            if self.model.spec.input_hw is not None:  # the shape live frames will have
                estimate.seed_inference(warm_up_ns, max_batch)
        self.stats.start_clock()  # the run's clock starts once all is ready
        self._sources = [
            VideoSource(p, self._queues["decoded"], self.stats, self.supervisor)
            for p in self._plans
        ]
        factory = EventFactory(config.name, self.run_id, self.model.spec.labels)
        self._stages: list[tuple[Stage, str, str]] = [  # type: ignore[type-arg]
            (PreprocessStage(self.model, estimate, self.stats), "decoded", "prepared"),
            (inference, "prepared", "inferred"),
            (
                PostprocessStage(
                    self.model,
                    checked.rules,
                    factory,
                    frozenset(config.events.emit),
                    config.model.confidence,
                    object_rules(config, checked.zones, checked.lines),
                    estimate,
                    self.stats,
                ),
                "inferred",
                "events",
            ),
        ]
        self._sink = RedisSink(
            client,
            redis_cfg.stream,
            config.name,
            redis_cfg.maxlen,
            spool,
            self._queues["events"],
            source_ids,
            self.stats,
            self.supervisor,
        )

    def _make_queue(self, name: str, plan: QueuePlan) -> StageQueue:  # type: ignore[type-arg]
        return StageQueue(name, plan.size, plan.overflow, functools.partial(self._dropped, name))

    def _dropped(self, where: str, item: object, reason: DropReason) -> None:
        """Count an item that will never reach Redis: an event is lost, a frame dropped."""
        if isinstance(item, Event):
            self.stats.events_lost(1)
        else:
            self.stats.frame_dropped(where, reason.value)

    @property
    def source_ids(self) -> list[str]:
        return [p.config.id for p in self._plans]

    def start(self) -> None:
        sup = self.supervisor
        ids = self.source_ids
        for source in self._sources:
            sup.spawn(f"streamer.src.{source.id}", source.run)
        for stage, inbox, outbox in self._stages:
            sup.spawn(
                f"streamer.{stage.name}",
                functools.partial(
                    run_stage, stage, self._queues[inbox], self._queues[outbox], ids, sup
                ),
            )
        sup.spawn("streamer.sink", self._sink.run)
        log.info(
            "pipeline %s running: %d source(s), run %s", self.config.name, len(ids), self.run_id
        )

    def stop(self) -> None:
        """Stop the sources; what they decoded already drains through to Redis."""
        self.supervisor.stop_sources.set()

    def halt(self) -> None:
        """Stop every thread now; events not yet delivered are counted as lost."""
        self.supervisor.stop_sources.set()
        self.supervisor.halt.set()

    def running(self) -> bool:
        return bool(self.supervisor.alive())

    def join(self, timeout_s: float) -> bool:
        """Wait for every thread; once all ended, count what a halt left in the queues
        (each stage counts what it held itself)."""
        if not self.supervisor.join(timeout_s):
            return False
        for name, queue in self._queues.items():
            while (item := queue.get_nowait()) is not None:
                if not is_control(item):
                    self._dropped(name, item, DropReason.SHUTDOWN)
        return True

    @property
    def failed_sources(self) -> list[str]:
        return [s.id for s in self._sources if s.failed]
