"""Options that several commands share."""

from __future__ import annotations

import click

from streamer.pipeline.lifecycle import DEFAULT_REDIS_URL, REDIS_URL_VARIABLE

# The Redis a reading command (`events tail`, `status`) reads from.
redis_url_option = click.option(
    "--redis-url",
    envvar=REDIS_URL_VARIABLE,
    default=DEFAULT_REDIS_URL,
    show_default=True,
    show_envvar=True,
)

# What replaces a pipeline file's sources (`run`, `profile`).
source_option = click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="URI|ID=URI",
    help="Replace the sources with URI, or replace/add the source ID.",
)

realtime_option = click.option(
    "--realtime/--no-realtime",
    default=None,
    help="Pace files like cameras, or process every frame as fast as possible.",
)
