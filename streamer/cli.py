"""The `streamer` command line (DESIGN.md section 8).

Exit codes: 0 done; 2 bad usage, config, model, a missing file or an unreachable
Redis at start (one line, no traceback); 1 failure while running; 130 interrupted
(SIGINT or SIGTERM: sources stop, in-flight frames drain, events are flushed).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import NoReturn, TypeVar

import click
import redis

from streamer import consumer, logs
from streamer.config import load_config, with_overrides
from streamer.errors import ConfigError, PipelineFailed, StreamerError
from streamer.metrics import serve_metrics
from streamer.pipeline import Pipeline, check
from streamer.progress import RunDisplay, summary
from streamer.urls import redact

log = logging.getLogger("streamer")
T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DRAIN_TIMEOUT_S = 10.0  # after a stop request, how long in-flight frames may take to drain
JOIN_TIMEOUT_S = 10.0  # after a halt; the sink may still be finishing a write


def say_error(message: str) -> None:
    click.echo(f"streamer: error: {redact(message)}", err=True)


def fail_usage(message: str) -> NoReturn:
    say_error(message)
    sys.exit(EXIT_USAGE)


def in_file(path: Path, build: Callable[[], T]) -> T:
    """`build()`, naming the pipeline file in its ConfigErrors (schema errors name it already)."""
    try:
        return build()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def redis_url_for(flag: str | None, from_file: str | None) -> str:
    """--redis-url (click fills it from $STREAMER_REDIS_URL when not given), else the
    pipeline's sink.redis.url, else the local default."""
    return flag or from_file or DEFAULT_REDIS_URL


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="streamer")
def main(verbose: bool) -> None:
    """Real-time video analytics: video sources -> ONNX detection -> events in Redis Streams."""
    logs.setup(verbose)


@main.command()
@click.argument("pipeline_file", type=click.Path(path_type=Path))
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="URI|ID=URI",
    help="Replace the sources with URI, or replace/add the source ID.",
)
@click.option("--model", type=click.Path(path_type=Path), help="Use this ONNX file instead.")
@click.option(
    "--redis-url",
    envvar="STREAMER_REDIS_URL",
    show_envvar=True,
    help=f"Redis to write events to [default: pipeline's, else {DEFAULT_REDIS_URL}].",
)
@click.option(
    "--realtime/--no-realtime",
    default=None,
    help="Pace files like cameras, or process every frame as fast as possible.",
)
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop each source after N frames.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after SECONDS.")
@click.option(
    "--stats-json", type=click.Path(path_type=Path), help="Write run statistics here at exit."
)
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), help="Serve Prometheus metrics on this port."
)
def run(
    pipeline_file: Path,
    sources: tuple[str, ...],
    model: Path | None,
    redis_url: str | None,
    realtime: bool | None,
    max_frames: int | None,
    duration: float | None,
    stats_json: Path | None,
    metrics_port: int | None,
) -> None:
    """Run PIPELINE_FILE until its sources end, --duration passes, or a signal stops it."""
    try:
        config = with_overrides(
            load_config(pipeline_file), sources=sources, model=model, realtime=realtime
        )
        url = redis_url_for(redis_url, config.sink.redis.url)
        pipeline = in_file(pipeline_file, lambda: Pipeline(config, url, max_frames=max_frames))
    except StreamerError as exc:
        fail_usage(str(exc))
    if metrics_port is not None:
        try:
            serve_metrics(pipeline.stats, metrics_port)
        except OSError as exc:
            fail_usage(f"--metrics-port {metrics_port}: {exc.strerror or exc}")
    log.info("writing events to %s", redact(url))
    code = _run_until_done(pipeline, duration)
    snapshot = pipeline.stats.snapshot()
    log.info("done: %s", summary(snapshot))
    if stats_json is not None:
        try:
            stats_json.write_text(json.dumps(snapshot, indent=2) + "\n")
        except OSError as exc:
            say_error(f"{stats_json}: cannot write the stats ({exc.strerror or exc})")
            code = code or EXIT_FAILED
    if pipeline.running():
        os._exit(code)  # threads stuck in a library call: do not wait for them
    sys.exit(code)


def _run_until_done(pipeline: Pipeline, duration: float | None) -> int:
    signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        if len(signals) == 1:
            log.warning("%s: stopping sources and draining", signal.Signals(signum).name)
            pipeline.stop()
        elif len(signals) == 2:
            log.warning("second signal: stopping now")
            pipeline.halt()
        else:
            os._exit(EXIT_INTERRUPTED)  # a thread is stuck and the user insists

    # Kept until the process exits: a third signal must work during the final join too.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    started = time.monotonic()
    stop_requested_at: float | None = None
    display = RunDisplay(pipeline.expected_frames, interactive=sys.stderr.isatty())
    pipeline.start()
    with display:
        while pipeline.running() and not pipeline.supervisor.halt.is_set():
            time.sleep(0.1)
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                pipeline.stop()
            if pipeline.supervisor.stop_sources.is_set() and stop_requested_at is None:
                stop_requested_at = now
            if stop_requested_at is not None and now - stop_requested_at > DRAIN_TIMEOUT_S:
                log.warning("draining took over %.0f s; stopping now", DRAIN_TIMEOUT_S)
                pipeline.halt()
            display.update(pipeline.stats.snapshot())
        # Halted (a failure, a second signal, a drain that took too long): every
        # thread gives up within moments; the join below waits a bounded time.
    if not pipeline.join(JOIN_TIMEOUT_S):
        log.error("threads still running at exit: %s", ", ".join(pipeline.supervisor.alive()))
        return EXIT_FAILED  # the caller exits without waiting for them
    try:
        pipeline.supervisor.raise_if_failed()
    except PipelineFailed as exc:
        say_error(str(exc))
        return EXIT_FAILED
    if signals:
        return EXIT_INTERRUPTED
    if pipeline.failed_sources:
        say_error(f"source(s) failed: {', '.join(pipeline.failed_sources)}")
        return EXIT_FAILED
    return EXIT_OK


@main.command()
@click.argument("pipeline_files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(pipeline_files: tuple[Path, ...]) -> None:
    """Check pipeline files: schema, model, class filter, video files (not Redis)."""
    failed = False
    for path in pipeline_files:
        try:
            config = load_config(path)
            model = in_file(path, functools.partial(check, config)).model
        except StreamerError as exc:
            say_error(str(exc))
            failed = True
            continue
        click.echo(
            f"{path}: ok ({len(config.sources)} source(s), {model.spec.family} model "
            f"with {model.spec.num_classes} classes)"
        )
    sys.exit(EXIT_USAGE if failed else EXIT_OK)


@main.command()
@click.argument("model_file", type=click.Path(path_type=Path))
def inspect(model_file: Path) -> None:
    """Show a model's inputs, outputs, recognised family and labels."""
    from streamer.models import Model
    from streamer.models.runtime import open_session

    try:
        # The inputs and outputs first, from a bare session: they are what to look at
        # when the family is not recognised.
        session = open_session(model_file, ["cpu"], threads=1)
        click.echo(f"model: {model_file}")
        for i in session.get_inputs():
            click.echo(f"input:  {i.name} {i.type} {i.shape}")
        for o in session.get_outputs():
            click.echo(f"output: {o.name} {o.type} {o.shape}")
        model = Model.load(model_file, providers=("cpu",), threads=1, workers=1)
    except StreamerError as exc:
        fail_usage(str(exc))
    spec = model.spec
    click.echo(f"family: {spec.family}")
    shape = (
        f"{spec.input_hw[0]}x{spec.input_hw[1]}"
        if spec.input_hw
        else f"dynamic (long side {spec.imgsz}, multiple of {spec.stride})"
    )
    click.echo(f"input size: {shape}; batch: {spec.batch or 'dynamic'}")
    click.echo(
        f"pre-processing: {'RGB' if spec.rgb else 'BGR'}, "
        f"{'/255' if spec.scale != 1 else '0..255'}, "
        f"{'centred' if spec.centered else 'top-left'} letterbox"
    )
    click.echo(f"labels ({spec.num_classes}): {', '.join(spec.labels)}")


@main.command()
@click.argument("model_file", type=click.Path(path_type=Path))
@click.option(
    "--clip",
    "clips",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A video of the scenes the model will see; repeat for more. Frames are spread over all.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Default: MODEL_FILE's name + .int8.onnx.",
)
@click.option("--calibration-frames", type=click.IntRange(1, 10_000), default=64, show_default=True)
@click.option(
    "--check-frames",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Other frames, on which both models are compared.",
)
@click.option(
    "--method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default="minmax",
    show_default=True,
    help="How activation ranges are calibrated.",
)
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.25, show_default=True)
@click.option("--json", "json_file", type=click.Path(path_type=Path), help="Write the report here.")
def quantize(
    model_file: Path,
    clips: tuple[Path, ...],
    output: Path | None,
    calibration_frames: int,
    check_frames: int,
    method: str,
    confidence: float,
    json_file: Path | None,
) -> None:
    """Make an int8 (QDQ) copy of MODEL_FILE, calibrated on frames of your own clips, and
    report its speed and how its detections agree with the float model's."""
    from streamer.quantize import MATCH_IOU, MIN_AGREEMENT, quantize_and_check

    output = output or model_file.with_name(f"{model_file.stem}.int8.onnx")
    try:
        report = quantize_and_check(
            model_file,
            output,
            list(clips),
            calibration_frames=calibration_frames,
            check_frames=check_frames,
            method=method,
            confidence=confidence,
        )
    except StreamerError as exc:
        fail_usage(str(exc))
    except OSError as exc:
        fail_usage(f"{exc.filename or output}: {exc.strerror or exc}")
    agreement = report.agreement
    click.echo(f"wrote {output} ({method} calibration on {report.calibration_frames} frames)")
    click.echo(
        f"speed (batch 1, CPU): float {report.float_ms:.1f} ms, int8 {report.int8_ms:.1f} ms "
        f"per frame: {report.speedup:.2f}x"
    )
    click.echo(
        f"agreement on {agreement.frames} other frames: {agreement.matched} of "
        f"{agreement.float_boxes} float detections matched by int8 at IoU >= {MATCH_IOU} "
        f"({agreement.matched_fraction:.1%}), mean IoU {agreement.mean_iou:.3f}; "
        f"int8 found {agreement.int8_boxes}"
    )
    if agreement.float_boxes == 0:
        log.warning(
            "the float model found nothing on the check frames: agreement is unknown; "
            "use clips where it finds objects"
        )
    elif agreement.matched_fraction < MIN_AGREEMENT:
        log.warning(
            "the int8 model misses or moves %.0f %% of the float model's detections: "
            "prefer the float model, or calibrate on more varied frames",
            100 * (1 - agreement.matched_fraction),
        )
    if json_file is not None:
        json_file.write_text(json.dumps(report.as_dict(), indent=2) + "\n")


@main.group()
def events() -> None:
    """Read events from Redis."""


@events.command("tail")
@click.option(
    "--redis-url",
    envvar="STREAMER_REDIS_URL",
    default=DEFAULT_REDIS_URL,
    show_default=True,
    show_envvar=True,
)
@click.option("--stream", help="Stream key [default: the only streamer:*:events stream].")
@click.option("--count", type=click.IntRange(min=0), help="Show the last N events (or N new ones).")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events.")
@click.option("--group", help="Read as this consumer group (acknowledging each event).")
@click.option(
    "--consumer",
    "consumer_name",
    default="streamer-cli",
    show_default=True,
    help="Consumer name within --group.",
)
@click.option(
    "--claim-idle-ms",
    type=click.IntRange(min=0),
    help="With --group, also take over events other consumers left pending this long.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each event's JSON on one line.")
def events_tail(
    redis_url: str,
    stream: str | None,
    count: int | None,
    follow: bool,
    group: str | None,
    consumer_name: str,
    claim_idle_ms: int | None,
    as_json: bool,
) -> None:
    """Print events from a stream: the last ones, then new ones with --follow."""
    if claim_idle_ms is not None and not group:
        fail_usage("--claim-idle-ms needs --group")
    try:
        client = consumer.connect(redis_url)
        key = stream or _only_stream(client)
        if group:
            # --count is how many to take: the group hands out new events, not the last N.
            reader = consumer.Consumer(client, key, group, consumer_name, auto_ack=True)
            read = reader.events(follow=follow, limit=count, claim_idle_ms=claim_idle_ms)
        else:
            reader = consumer.Consumer(client, key, start="0" if count is None else count)
            read = reader.events(follow=follow)
        for event in read:
            click.echo(json.dumps(event.raw) if as_json else _one_line(event))
    except StreamerError as exc:
        fail_usage(str(exc))
    except redis.RedisError as exc:
        say_error(f"{redis_url}: {exc}")
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _only_stream(client: redis.Redis) -> str:
    streams = consumer.find_streams(client)
    if len(streams) == 1:
        return streams[0]
    if not streams:
        raise StreamerError("no streamer:* stream in this Redis yet; name one with --stream")
    raise StreamerError(f"several streams, choose one with --stream: {', '.join(streams)}")


def _one_line(event: consumer.StreamEvent) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(event.emitted_at))
    head = f"{event.entry_id} {when} {event.source} #{event.seq} {event.type}"
    if event.type == "source_status":
        return f"{head} {event.status}" + (f" ({event.detail})" if event.detail else "")
    if event.type == "detections":
        frame = event.frame.index if event.frame else "?"
        boxes = ", ".join(f"{o.label} {o.confidence:.2f} {_box(o.bbox)}" for o in event.objects)
        return f"{head} frame {frame}: {boxes or 'nothing'}"
    o = event.object
    if o is None:
        return f"{head} {json.dumps(event.raw)}"
    where = event.zone or event.line
    parts = [head, f"{o.label} #{o.track_id}"]
    if where:
        parts.append(f"{where} {event.direction}" if event.direction else where)
    if o.dwell_s is not None:
        parts.append(f"{o.dwell_s:.1f} s")
    parts.append(_box(o.bbox))
    return " ".join(parts)


def _box(bbox: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in bbox) + "]"
