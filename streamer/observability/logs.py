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


def setup(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # PyAV's bridge from FFmpeg's log to Python's can deadlock with threaded decoding
    # (PyAV issues #751, #2276); corrupt input is counted by the decoder instead.
    av.logging.set_level(None)
