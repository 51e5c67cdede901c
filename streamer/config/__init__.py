"""The pipeline file: its schema, reading it, and the command line's overrides."""

from streamer.config.loader import load_config, parse_config
from streamer.config.overrides import with_overrides
from streamer.config.schema import PipelineConfig

__all__ = ["PipelineConfig", "load_config", "parse_config", "with_overrides"]
