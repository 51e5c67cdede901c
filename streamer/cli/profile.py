"""`streamer profile`: record what a good day looks like, for `health.profile`.

Runs the pipeline without a sink (no events are written anywhere) and learns each
source's references over the whole run, then writes them to one file. A user records a
good day once and compares against it for weeks.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from streamer.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, fail_usage, say_error
from streamer.cli.options import realtime_option, source_option
from streamer.cli.run import (
    interrupted_while_starting,
    parse_finite,
    parse_writable,
    run_until_done,
)
from streamer.config import load_config
from streamer.config.loader import naming_file
from streamer.config.schema import HealthConfig
from streamer.errors import StreamerError
from streamer.events.event import Event
from streamer.pipeline.lifecycle import Pipeline
from streamer.quality.profiles import save_profiles

log = logging.getLogger("streamer")

# Learning for as long as the run goes: the schema's longest baseline.
WHOLE_RUN_S = 30 * 86_400.0


def _ignore(_event: Event) -> None:
    pass


@click.command()
@click.argument("pipeline_file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    callback=parse_writable,
    help="The profile file to write (give it to the pipeline as health.profile).",
)
@source_option
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    callback=parse_finite,
    help="Learn for SECONDS [default: files to their end, cameras until Ctrl-C].",
)
@realtime_option
def profile(
    pipeline_file: Path,
    out: Path,
    sources: tuple[str, ...],
    duration: float | None,
    realtime: bool | None,
) -> None:
    """Learn each source's reference profile (its picture and its detections) from a run
    of PIPELINE_FILE, and write it to --out. Ctrl-C ends the learning and writes it."""
    try:
        config = load_config(pipeline_file)
        health = config.health or HealthConfig()
        config = config.model_copy(
            update={
                "health": health.model_copy(update={"baseline_s": WHOLE_RUN_S, "profile": None}),
                "workers": 1,
                "ray": None,
            }
        )
        with naming_file(pipeline_file):
            pipeline = Pipeline.from_config(
                config,
                source=sources,
                redis_url=None,
                realtime=realtime,
                duration_s=duration,
                on_event=_ignore,  # learning only: the events go nowhere
            )
    except StreamerError as exc:
        fail_usage(str(exc))
    except KeyboardInterrupt:
        interrupted_while_starting()
    code = run_until_done(pipeline)
    if code not in (EXIT_OK, EXIT_INTERRUPTED):
        sys.exit(code)  # a failed run learnt nothing to trust
    profiles = pipeline.profiles()
    try:
        save_profiles(out, config.name, pipeline.labels, profiles)
    except OSError as exc:
        say_error(f"{out}: cannot write the profile ({exc.strerror or exc})")
        sys.exit(EXIT_FAILED)
    for sid, p in profiles.items():
        frames = 0 if p.detections is None else p.detections.frames
        boxes = 0 if p.detections is None else p.detections.boxes
        picture = "a picture reference" if p.picture is not None else "no picture reference"
        log.info("source %s: %s, detections of %d frames (%d boxes)", sid, picture, frames, boxes)
    click.echo(f"{out}: profile of {len(profiles)} source(s)")
