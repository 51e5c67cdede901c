"""Logging set-up for the command line: one line per message, on stderr."""

from __future__ import annotations

import logging
import sys

import av.logging

from streamer.observability.redact import redact


class RedactingFormatter(logging.Formatter):
    """Hides URL passwords in every line, wherever a library put the URL."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup(verbose: bool = False, name: str | None = None) -> None:
    """`name`: shown on each line, to tell the processes of a sharded run apart."""
    handler = logging.StreamHandler(sys.stderr)
    where = f"[{name}] " if name else ""
    handler.setFormatter(
        RedactingFormatter(f"%(asctime)s %(levelname)-7s {where}%(message)s", datefmt="%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # PyAV's bridge from FFmpeg's log to Python's can deadlock with threaded decoding
    # (PyAV issues #751, #2276); corrupt input is counted by the decoder instead.
    av.logging.set_level(None)
