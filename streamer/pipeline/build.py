"""Building a pipeline's parts from its config, and checking that they fit.

    sources ─decoded─► preprocess ─prepared─► infer ─inferred─► postprocess ─┬─► Redis sink
                                                                             └─► in-process

Everything that can be wrong with the user's files (the model, the videos, the labels
named in class filters, zones and lines, Redis) is found here, before any thread starts.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.analytics.motion import MotionGate, MotionSettings
from streamer.analytics.rules import LineRule, ZoneRule, rules_by_source
from streamer.config.schema import PipelineConfig, RedisSinkConfig, SnapshotStore, SourceConfig
from streamer.errors import ConfigError
from streamer.events.event import SourceState
from streamer.events.factory import EmitLog, EventFactory, new_ulid
from streamer.models import Model
from streamer.pipeline.parts import Parts, Sink, StageThread
from streamer.pipeline.plans import QueuePlan, expected_frames, plan_queues
from streamer.preview.board import FrameBoard, Shown
from streamer.preview.drawing import regions_by_source
from streamer.preview.recording import RECORD_QUEUE, RECORD_SUFFIXES, Recorder, recording_path
from streamer.preview.snapshots import EventSnapshots
from streamer.quality.profiles import SourceProfile, load_profiles
from streamer.quality.settings import watchers
from streamer.runtime.clock import Clock
from streamer.runtime.deadlines import WorkEstimate
from streamer.runtime.messages import DropReason, Emitted, SourceStatus, source_of
from streamer.runtime.queues import FanOut, Overflow, StageQueue
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Supervisor
from streamer.sinks.local import EventCallback, LocalSink
from streamer.sinks.redis_streams import RedisSink
from streamer.sources.ffmpeg_options import unknown_options
from streamer.sources.opening import file_options, probe_file
from streamer.sources.video import VideoSource, plan_sources
from streamer.stages.inference import InferenceStage
from streamer.stages.postprocess import DetectionRules, PostprocessStage
from streamer.stages.preprocess import PreprocessStage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checked:
    model: Model
    rules: DetectionRules
    zones: list[ZoneRule]
    lines: list[LineRule]
    file_frames: dict[str, int | None]  # frames each file source announces (None: unknown)
    profiles: dict[str, SourceProfile]  # the references of `health.profile`, per source


def check(config: PipelineConfig, model: Model | None = None) -> Checked:
    """Everything `streamer validate` checks: the model (loaded, unless given), the labels
    named in class filters, zones and lines, the video files; a StreamerError naming what
    is wrong."""
    model = model or Model.from_config(config.model)
    spec = model.spec
    rules = DetectionRules.from_config(config, spec)
    zones = [
        ZoneRule.from_config(z, spec.class_ids(z.labels, f"zones[{i}].labels"))
        for i, z in enumerate(config.zones)
    ]
    lines = [
        LineRule.from_config(ln, spec.class_ids(ln.labels, f"lines[{i}].labels"))
        for i, ln in enumerate(config.lines)
    ]
    for i, group in enumerate(config.tracking.class_groups or []):
        spec.class_ids(group, f"tracking.class_groups[{i}]")
    plan_sources(config, None)
    for i, source in enumerate(config.sources):
        for name in unknown_options(source.ffmpeg_options):
            log.warning(
                "sources[%d].ffmpeg_options: FFmpeg has no option %r; it does nothing", i, name
            )
    frames = {s.id: probe_file(s.uri, file_options(s)) for s in config.sources if s.is_file}
    health = config.health
    profiles: dict[str, SourceProfile] = {}
    if health is not None and health.profile is not None:
        profiles = load_profiles(health.profile, spec.labels)
    return Checked(model, rules, zones, lines, frames, profiles)


@dataclass(frozen=True)
class Recording:
    """`--record FILE`: where each source's processed video goes."""

    path: Path
    several: bool  # the pipeline has several sources: one file each, named after it

    def path_of(self, source_id: str) -> Path:
        return recording_path(self.path, source_id, self.several)

    def check(self) -> None:
        """ConfigError when the files cannot be written there."""
        folder = self.path.parent
        if not folder.is_dir():
            raise ConfigError(f"--record {self.path}: the folder {folder} does not exist")
        _check_writable(folder, f"--record {self.path}")
        if self.path.suffix.lower() not in RECORD_SUFFIXES:
            raise ConfigError(
                f"--record {self.path}: name a video file ({', '.join(RECORD_SUFFIXES)})"
            )


@dataclass(frozen=True)
class ShardRun:
    """A shard's part in a pipeline run spread over processes (`streamer.shards`)."""

    run_id: str  # the pipeline run's, shared by its shards
    log: EmitLog | None  # told of every event made
    restarted: str | None = None  # why this shard replaces one that died; None: first start
    last_track_ids: Mapping[str, int] = field(default_factory=dict)  # the dead shard's


@dataclass(frozen=True)
class Built:
    run_id: str
    parts: Parts
    expected_frames: int | None
    last_seqs: Mapping[str, int] = field(default_factory=dict)  # a restarted shard's start


def build(
    config: PipelineConfig,
    *,
    redis_url: str | None,
    max_frames: int | None,
    on_event: EventCallback | None,
    clock: Clock,
    model: Model | None = None,
    shard: ShardRun | None = None,
    record: Recording | None = None,
) -> Built:
    """Check the config, connect to Redis (unless `redis_url` is None), warm the model up
    for live sources, and connect the parts by their queues. `model`: one loaded already
    (the config's is loaded otherwise); `shard`: the run this pipeline is a shard of;
    `record`: where to write the processed video.

    A restarted shard's sources go on after the last seq their streams (or the spool)
    hold, and are first reported disconnected: the frames no shard read are gone."""
    checked = check(config, model)
    model = checked.model
    if record is not None:
        record.check()
    plans = plan_sources(config, max_frames)
    source_ids = [p.config.id for p in plans]
    supervisor = Supervisor()
    stats = RunStats(source_ids, clock)
    stats.providers = model.providers
    stats.count_regions([z.name for z in config.zones], [ln.name for ln in config.lines])

    max_batch = config.model.batch.max_size
    if model.spec.batch is not None:
        max_batch = min(max_batch, model.spec.batch)
    live = any(p.realtime for p in plans)
    queue_plans = plan_queues(config, live, max_batch)

    def make_queue(
        name: str,
        plan: QueuePlan,
        counts_events: bool = True,
        share_by: Callable[[Any], str] | None = None,
    ) -> StageQueue:  # type: ignore[type-arg]
        on_drop = functools.partial(_dropped, stats, name, counts_events)
        return StageQueue(name, plan.size, plan.overflow, on_drop, share_by=share_by)

    # Frame queues share out by source: sources take turns, and an overloaded live
    # pipeline drops from the sources that have the most frames waiting, starving none.
    frames: dict[str, StageQueue[Any]] = {
        name: make_queue(name, queue_plans[name], share_by=source_of)
        for name in ("decoded", "prepared", "inferred")
    }
    # Each sink has its own inbox, so each goes at its own pace.
    sinks: list[Sink] = []
    inboxes: list[StageQueue[Emitted]] = []
    run_id = new_ulid() if shard is None else shard.run_id
    last_seqs: dict[str, int] = {}
    if redis_url is not None:
        redis_inbox = make_queue("events", queue_plans["events"])
        redis_sink = RedisSink.from_config(
            config.redis or RedisSinkConfig(), redis_url, config.name, redis_inbox,
            source_ids, stats, supervisor, clock,
        )  # fmt: skip
        if shard is not None and shard.restarted is not None:
            last_seqs = redis_sink.last_seqs(run_id)
        sinks.append(redis_sink)
        inboxes.append(redis_inbox)
    # Without Redis, handing an event over in process is its delivery, counted as such.
    in_process = redis_url is None
    local_inbox = make_queue("deliver", queue_plans["events"], counts_events=in_process)
    local = LocalSink(local_inbox, source_ids, stats, supervisor, on_event, in_process, clock)
    sinks.append(local)
    inboxes.append(local_inbox)

    recorders: list[StageQueue[Shown]] = []
    if record is not None:
        on_drop = functools.partial(_unrecorded, stats)
        recorders.append(StageQueue("record", RECORD_QUEUE, Overflow.BLOCK, on_drop))
    board = FrameBoard(
        model.spec.labels, regions_by_source(config), recorders, stop=supervisor.halt, clock=clock
    )
    if record is not None:
        paths = {sid: record.path_of(sid) for sid in source_ids}
        sinks.append(Recorder(recorders[0], board, paths, supervisor))
    snapshots = event_snapshots(config, run_id, board, clock, has_redis=redis_url is not None)

    estimate = WorkEstimate(clock)
    inference = InferenceStage(
        model,
        max_batch,
        config.model.batch.max_wait_ms,
        estimate,
        stats,
        wake=frames["prepared"].wake,
        clock=clock,
    )
    if live:
        warm_up_ns = inference.warm_up()
        if model.spec.input_hw is not None:  # the shape live frames will have
            estimate.seed_inference(warm_up_ns, max_batch)
    factory = EventFactory(
        config.name,
        run_id,
        model.spec.labels,
        clock,
        last_seq=last_seqs,
        log=None if shard is None else shard.log,
    )
    last_track_ids = {} if shard is None else shard.last_track_ids
    watching = watchers(config.health, source_ids, len(model.spec.labels), checked.profiles)
    postprocess = PostprocessStage(
        model,
        checked.rules,
        factory,
        frozenset(config.events.emit),
        config.model.confidence,
        rules_by_source(config, checked.zones, checked.lines, model.spec.labels, last_track_ids),
        estimate,
        stats,
        board,
        clock,
        snapshots,
        watching.drift,
    )
    parts = Parts(
        sources=[
            VideoSource(
                p,
                frames["decoded"],
                stats,
                supervisor,
                clock,
                watching.cameras.get(p.config.id),
                motion_gate(config, p.config),
                gpu_of(model),
            )
            for p in plans
        ],
        stages=[
            StageThread(
                PreprocessStage(model, estimate, stats, clock),
                frames["decoded"],
                frames["prepared"],
            ),
            StageThread(inference, frames["prepared"], frames["inferred"]),
            StageThread(postprocess, frames["inferred"], FanOut(inboxes)),
        ],
        sinks=sinks,
        local=local,
        queues=[*frames.values(), *inboxes, *recorders],
        stats=stats,
        supervisor=supervisor,
        board=board,
        watchers=watching,
        labels=model.spec.labels,
    )
    if shard is not None and shard.restarted is not None:
        for sid in source_ids:
            status = SourceStatus(sid, SourceState.DISCONNECTED, clock.time(), shard.restarted)
            stats.source_state(sid, status.status, status.detail)
            frames["decoded"].put_control(status)
    return Built(run_id, parts, expected_frames(plans, checked.file_frames), last_seqs)


def gpu_of(model: Model) -> int | None:
    """The CUDA device where the model's batches are prepared, if they are on one: frames
    that NVDEC decodes stay there."""
    device = model.array_device
    return device.device_id if device is not None and device.ort_device == "cuda" else None


def motion_gate(config: PipelineConfig, source: SourceConfig) -> MotionGate | None:
    """The gate that spares `source`'s still frames the model, when it is motion-gated."""
    motion = config.motion_of(source)
    return None if motion is None else MotionGate(MotionSettings.from_config(motion))


def event_snapshots(
    config: PipelineConfig, run_id: str, board: FrameBoard, clock: Clock, *, has_redis: bool
) -> EventSnapshots | None:
    """What takes the pictures object events carry (None: the pipeline takes none);
    ConfigError when they cannot be stored where the file says."""
    settings = config.events.snapshot_settings
    if settings is None:
        return None
    if settings.store is SnapshotStore.REDIS and not has_redis:
        raise ConfigError(
            "events.snapshots: store: redis needs the pipeline's Redis sink, and it has none "
            "(sink: none); use store: disk"
        )
    if settings.store is SnapshotStore.DISK:
        try:
            settings.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"events.snapshots.folder: cannot make {settings.folder} ({exc.strerror or exc})"
            ) from None
        _check_writable(settings.folder, "events.snapshots.folder")
    return EventSnapshots(settings, config.name, run_id, board, clock)


def _check_writable(folder: Path, what: str) -> None:
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{what}: cannot write in {folder}")


def _unrecorded(stats: RunStats, item: Shown, reason: DropReason) -> None:
    stats.frame_dropped("record", reason.value, item.frame.source_id)


def _dropped(
    stats: RunStats, where: str, counts_events: bool, item: object, reason: DropReason
) -> None:
    """Count an item that will never reach its sink: an event is lost, a frame dropped."""
    if isinstance(item, Emitted):
        if counts_events:
            stats.events_lost(1)
    else:
        stats.frame_dropped(where, reason.value, source_of(item))
