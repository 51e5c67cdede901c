"""`streamer status`: what a running pipeline is doing, and which shard runs which camera
on which host, as its run publishes it in Redis."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from streamer.cli.exits import EXIT_FAILED, fail_usage, say_error
from streamer.cli.options import redis_url_option
from streamer.client.connection import connect
from streamer.config import load_config
from streamer.errors import StreamerError
from streamer.observability.status import EXPIRE_S, read_status


@click.command()
@click.argument("pipeline")
@redis_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole status document.")
def status(pipeline: str, redis_url: str, as_json: bool) -> None:
    """Show the status of PIPELINE (its name, or its file) while it runs."""
    try:
        name = (
            load_config(Path(pipeline)).name if pipeline.endswith((".yaml", ".yml")) else pipeline
        )
        client = connect(redis_url)
        doc = read_status(client, name)
        client.close()
    except StreamerError as exc:
        fail_usage(str(exc))
    if doc is None:
        say_error(f"pipeline {name}: no status in Redis (no run has published one in {EXPIRE_S} s)")
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps(doc, indent=2) if as_json else describe(doc))


def describe(doc: dict[str, Any]) -> str:
    """The status as a few lines for a terminal."""
    age = time.time() - doc["published_at"]
    frames, events = doc["frames"], doc["events"]
    lines = [
        f"pipeline {doc['pipeline']}, run {doc.get('run', '?')}: {doc['fps']:.1f} frames/s, "
        f"{frames['processed']} processed, {sum(frames['dropped'].values())} dropped, "
        f"{events['delivered']} events delivered, {events['lost']} lost "
        f"(published {age:.0f} s ago)"
    ]
    shards = doc.get("shards")
    if shards:
        rows = [("SHARD", "HOST", "PID", "RESTARTS", "SOURCES")]
        rows += [
            (name, s["host"] or "-", str(s["pid"] or "-"), str(s["restarts"]),
             ", ".join(s["sources"]))
            for name, s in shards.items()
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            lines.append(
                "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[4]])
            )
    else:
        lines.append("sources: " + ", ".join(doc["sources"]))
    for sid, quality in doc.get("health", {}).items():
        if quality["raised"]:
            lines.append(f"camera {sid}: {', '.join(quality['raised'])}")
    return "\n".join(lines)
