"""streamer: real-time video analytics from video sources to events in Redis Streams."""

from importlib.metadata import PackageNotFoundError, version

from streamer.consumer import Consumer, FrameRef, StreamEvent, TrackedObject

try:
    __version__ = version("streamer")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["Consumer", "FrameRef", "StreamEvent", "TrackedObject", "__version__"]
