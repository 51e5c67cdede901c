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


class SinkError(StreamerError):
    """The event sink cannot be reached at start."""


class PipelineFailed(Exception):
    """A stage failed while running; the pipeline stopped. Exit code 1."""
