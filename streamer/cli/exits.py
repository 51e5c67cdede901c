"""Exit codes and the one-line error every command ends with on bad input (DESIGN.md
section 8): 0 done; 2 bad usage, config, model, a missing file or an unreachable Redis at
start; 1 failure while running; 130 interrupted."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from streamer.observability.redact import redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def say_error(message: str) -> None:
    click.echo(f"streamer: error: {redact(message)}", err=True)


def fail_usage(message: str) -> NoReturn:
    say_error(message)
    sys.exit(EXIT_USAGE)
