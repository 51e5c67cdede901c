"""The `streamer` command line (DESIGN.md section 8): one module per group of commands.

Exit codes (`streamer.cli.exits`): 0 done; 2 bad usage, config, model, a missing file or an
unreachable Redis at start (one line, no traceback); 1 failure while running; 130
interrupted (SIGINT or SIGTERM: sources stop, in-flight frames drain, events are flushed).
"""

from __future__ import annotations

import click

from streamer.cli.events import events
from streamer.cli.models import inspect, quantize
from streamer.cli.profile import profile
from streamer.cli.run import run, validate
from streamer.cli.status import status
from streamer.observability import logs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="streamer")
def main(verbose: bool) -> None:
    """Real-time video analytics: video sources -> ONNX detection -> events in Redis Streams
    (or, with `sink: none`, on stdout)."""
    logs.setup(verbose)


for command in (run, validate, profile, status, inspect, quantize, events):
    main.add_command(command)
