"""A pipeline: built from its config, run as a Python object."""

from streamer.pipeline.lifecycle import Pipeline, PipelineState

__all__ = ["Pipeline", "PipelineState"]
