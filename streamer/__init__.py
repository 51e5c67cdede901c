"""streamer: real-time video analytics from video sources to events, in process or in Redis.

from streamer import Pipeline

with Pipeline.from_file("pipelines/demo.yaml", redis_url=None) as pipeline:
    for event in pipeline.events():
        print(event.type, event.source)
"""

from importlib.metadata import PackageNotFoundError, version

from streamer.client.consumer import Consumer
from streamer.client.streams import StreamsConsumer
from streamer.errors import PipelineFailed, StreamerError
from streamer.events.event import (
    Anchor,
    Direction,
    Event,
    EventType,
    FrameRef,
    LeftReason,
    SourceProblem,
    SourceState,
    TrackedObject,
)
from streamer.observability.server import OperatorServer
from streamer.pipeline import Pipeline, PipelineState
from streamer.shards.supervisor import ShardedPipeline

try:
    __version__ = version("streamer")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "Anchor",
    "Consumer",
    "Direction",
    "Event",
    "EventType",
    "FrameRef",
    "LeftReason",
    "OperatorServer",
    "Pipeline",
    "PipelineFailed",
    "PipelineState",
    "ShardedPipeline",
    "SourceProblem",
    "SourceState",
    "StreamerError",
    "StreamsConsumer",
    "TrackedObject",
    "__version__",
]
