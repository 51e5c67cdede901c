"""Error types, one per kind of failure, each mapped to an exit code by the CLI.

User mistakes (bad config, missing files, unknown models, an unreachable Redis at
start) are `StreamerError`s and are shown as one line, without a traceback.
"""

from __future__ import annotations


class StreamerError(Exception):
    """A failure the user can act on; printed as one line, exit code 2."""


class ConfigError(StreamerError):
    """A pipeline file, field or command-line value is invalid.

    The message names the file and the dotted field path, e.g.
    ``pipelines/x.yaml: model.confidence: must be <= 1, got 3``.
    """


class ModelError(StreamerError):
    """A model file is missing, is not ONNX, or is of a family we cannot decode."""


class SourceError(StreamerError):
    """A video source cannot be opened: a missing file, or a file that is not a video."""


class RedisUnavailable(StreamerError):
    """Redis cannot be reached, or refused the login, at start."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        """`unreachable`: no answer (it may come up later), rather than a refusal."""
        super().__init__(message)
        self.unreachable = unreachable


class SinkError(StreamerError):
    """The event sink cannot be used: a stream key holds something else, a spool file is
    in use or unreadable."""


class PipelineFailed(Exception):
    """A pipeline failed while running: a stage or a sink failed, a source failed for good,
    or an in-process consumer raised. The cause is chained (`__cause__`). Exit code 1."""
