"""`streamer run` and `streamer validate`: a thin layer over `Pipeline`.

What is left here is what a terminal needs: flags to keyword arguments, signals to
`Pipeline.stop`, a progress display, the stats file, and exit codes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click
import orjson

from streamer.cli.exits import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    fail_usage,
    say_error,
)
from streamer.cli.options import realtime_option, source_option
from streamer.cli.progress import RunDisplay, summary
from streamer.config import load_config
from streamer.config.loader import naming_file
from streamer.config.schema import AUTO, MAX_WORKERS
from streamer.errors import PipelineFailed, StreamerError
from streamer.events.event import Event
from streamer.observability.server import DEFAULT_HOST, OperatorServer
from streamer.observability.status import StatusPublisher
from streamer.pipeline.build import check
from streamer.pipeline.lifecycle import (
    DEFAULT_REDIS_URL,
    DRAIN_TIMEOUT_S,
    REDIS_URL_VARIABLE,
    UNSET,
    Pipeline,
    redis_url_for,
)
from streamer.shards.supervisor import ShardedPipeline

log = logging.getLogger("streamer")


def parse_workers(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> int | str | None:
    """--workers: a number of shard processes, or `auto`."""
    if value is None:
        return None
    text = value.strip().lower()
    if text == AUTO:
        return AUTO
    if text.isdigit() and 1 <= int(text) <= MAX_WORKERS:
        return int(text)
    raise click.BadParameter(f"{value!r} is not a number from 1 to {MAX_WORKERS}, or auto")


def parse_finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A number of seconds: nan and inf are no duration."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds")
    return value


def parse_writable(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A file the run writes at its end: found unwritable now, not after the run."""
    if value is None:
        return None
    if value.is_dir():
        raise click.BadParameter(f"{value} is a folder")
    folder = value.parent
    if not folder.is_dir():
        raise click.BadParameter(f"the folder {folder} does not exist")
    if not os.access(value if value.exists() else folder, os.W_OK):
        raise click.BadParameter(f"cannot write {value}")
    return value


DISPLAY_EVERY_S = 0.1


def print_event(event: Event) -> None:
    """A pipeline without Redis (`sink: none`) prints its events as JSON lines."""
    sys.stdout.buffer.write(orjson.dumps(event.to_dict()) + b"\n")
    sys.stdout.flush()


@click.command()
@click.argument("pipeline_file", type=click.Path(path_type=Path))
@source_option
@click.option("--model", type=click.Path(path_type=Path), help="Use this ONNX file instead.")
@click.option(
    "--redis-url",
    help=f"Redis to write events to [default: ${REDIS_URL_VARIABLE}, else the pipeline's "
    f"sink.redis.url, else {DEFAULT_REDIS_URL}].",
)
@realtime_option
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop each source after N frames.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    callback=parse_finite,
    help="Stop after SECONDS.",
)
@click.option(
    "--stats-json",
    type=click.Path(path_type=Path),
    callback=parse_writable,
    help="Write run statistics here at exit.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve the preview page, /healthz and Prometheus /metrics on this port (0: any free).",
)
@click.option(
    "--metrics-host",
    default=DEFAULT_HOST,
    show_default=True,
    help="The address --metrics-port listens on (0.0.0.0: every interface).",
)
@click.option(
    "--record",
    type=click.Path(path_type=Path),
    help="Write the processed video with its detections drawn here (one file per source).",
)
@click.option(
    "--workers",
    metavar="N|auto",
    callback=parse_workers,
    help="Run the sources in N shard processes (or auto) [default: the pipeline's workers].",
)
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    help="Run the shards as actors on this Ray cluster (auto, HOST:PORT or ray://HOST:10001).",
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
    metrics_host: str,
    record: Path | None,
    workers: int | str | None,
    ray_address: str | None,
) -> None:
    """Run PIPELINE_FILE until its sources end, --duration passes, or a signal stops it.

    With `sink: none` in the file and no --redis-url, events are printed as JSON lines."""
    try:
        config = load_config(pipeline_file)
        url = redis_url_for(config, redis_url or UNSET)  # an empty --redis-url: not given
        sharded = (
            (config.workers if workers is None else workers) != 1
            or ray_address is not None
            or config.ray is not None
        )
        pipeline: Pipeline | ShardedPipeline
        with naming_file(pipeline_file):
            if sharded:
                pipeline = ShardedPipeline.from_config(
                    config,
                    workers=workers,
                    source=sources,
                    model=model,
                    redis_url=url,
                    realtime=realtime,
                    max_frames=max_frames,
                    duration_s=duration,
                    verbose=logging.getLogger().isEnabledFor(logging.DEBUG),
                    ray_address=ray_address,
                    record=record,
                )
            else:
                pipeline = Pipeline.from_config(
                    config,
                    source=sources,
                    model=model,
                    redis_url=url,
                    realtime=realtime,
                    max_frames=max_frames,
                    duration_s=duration,
                    on_event=print_event if url is None else None,
                    record=record,
                )
    except StreamerError as exc:
        fail_usage(str(exc))
    except KeyboardInterrupt:
        interrupted_while_starting()
    server = publisher = None
    try:
        if metrics_port is not None:
            try:
                server = OperatorServer(pipeline, metrics_host, metrics_port)
            except OSError as exc:
                pipeline.stop(0.0)
                fail_usage(f"--metrics-port {metrics_host}:{metrics_port}: {exc.strerror or exc}")
            server.start()
        if url is None:
            log.info("writing events to stdout (sink: none)")
        else:
            try:
                publisher = StatusPublisher(url, config.name, pipeline.stats)
            except StreamerError as exc:
                log.warning("no status for `streamer status`: %s", exc)
    except KeyboardInterrupt:
        pipeline.stop(0.0)
        interrupted_while_starting()
    code = run_until_done(pipeline)
    if publisher is not None:
        publisher.close()
    if server is not None:
        server.close()
    snapshot = pipeline.stats()
    log.info("done: %s", summary(snapshot))
    if stats_json is not None:
        try:
            stats_json.write_text(json.dumps(snapshot, indent=2) + "\n")
        except OSError as exc:
            say_error(f"{stats_json}: cannot write the stats ({exc.strerror or exc})")
            code = code or EXIT_FAILED
    if pipeline.threads_alive():
        os._exit(code)  # threads stuck in a library call: do not wait for them
    sys.exit(code)


def interrupted_while_starting() -> NoReturn:
    """Ctrl-C before the run began: nothing ran, nothing to drain or report."""
    click.echo("streamer: interrupted while starting", err=True)
    sys.stderr.flush()
    # Threads that building started (a model's warm-up workers) must not hold the exit up.
    os._exit(EXIT_INTERRUPTED)


def run_until_done(pipeline: Pipeline | ShardedPipeline) -> int:
    """Run with signals mapped onto stops: the first drains, the second stops at once, a
    third exits without waiting for anything. The exit code."""
    signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        if len(signals) == 1:
            log.warning("%s: stopping sources and draining", signal.Signals(signum).name)
            pipeline.stop(DRAIN_TIMEOUT_S, wait=False)
        elif len(signals) == 2:
            log.warning("second signal: stopping now")
            pipeline.stop(0.0, wait=False)
        else:
            os._exit(EXIT_INTERRUPTED)  # a thread is stuck and the user insists

    # Kept until the process exits: a third signal must work during the final join too.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    display = RunDisplay(pipeline.expected_frames, interactive=sys.stderr.isatty())
    pipeline.start()
    try:
        with display:
            while not pipeline.join(DISPLAY_EVERY_S):
                display.update(pipeline.stats())
    except PipelineFailed as exc:
        say_error(str(exc))
        return EXIT_FAILED
    return EXIT_INTERRUPTED if signals else EXIT_OK


@click.command()
@click.argument("pipeline_files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(pipeline_files: tuple[Path, ...]) -> None:
    """Check pipeline files: schema, model, class filter, video files (not Redis)."""
    failed = False
    for path in pipeline_files:
        try:
            config = load_config(path)
            with naming_file(path):
                model = check(config).model
        except StreamerError as exc:
            say_error(str(exc))
            failed = True
            continue
        click.echo(
            f"{path}: ok ({len(config.sources)} source(s), {model.spec.family} model "
            f"with {model.spec.num_classes} classes)"
        )
    sys.exit(EXIT_USAGE if failed else EXIT_OK)
