"""Frozen messages that travel between the pipeline's threads.

Data items (`Frame`, `Still`, `Prepared`, `Inferred`, `Emitted`) can be dropped by a leaky queue;
control items (`SourceStatus`, `HealthChange`, `EndOfStream`) never are, and travel in
order with the frames of their source so that per-source event order holds end to end.

Times: `*_ns` fields are the pipeline clock's `monotonic_ns()`, used for deadlines and
latency; `*_at` fields are its wall-clock seconds since the epoch, used only in events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import av
import numpy as np
import orjson

from streamer.enums import StrEnum
from streamer.events.event import CameraHealth, Event, SourceProblem, SourceState

if TYPE_CHECKING:
    from streamer.device.prepare import Planes


class DropReason(StrEnum):
    QUEUE_FULL = "queue_full"  # a leaky queue evicted or refused the frame
    DEADLINE = "deadline"  # the frame could no longer finish before its deadline
    DECODE_ERROR = "decode_error"  # the decoder could not produce the frame
    SHUTDOWN = "shutdown"  # still queued when the pipeline had to stop without draining
    RATE_LIMIT = "max_fps"  # decimated to the source's max_fps


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture, made by a source and never changed afterwards.

    `picture` is the decoder's own frame (YUV, as decoded) or, from other sources, an
    H x W x 3 uint8 BGR array. Decoded frames are converted to BGR only by the stage that
    uses them, resized in the same pass: a frame dropped on the way costs no conversion.
    """

    source_id: str
    index: int  # 0-based position among the frames decoded from this source in this run
    pts_s: float | None  # presentation time in the stream, seconds
    captured_ns: int  # arrival (or paced presentation) time, monotonic
    captured_at: float  # the same instant on the wall clock
    deadline_ns: int | None  # None: offline, never dropped for lateness
    picture: av.VideoFrame | np.ndarray  # read-only by contract
    time_s: float  # on the source's own clock (a file's timestamps, a camera's arrival)

    @property
    def width(self) -> int:
        return picture_hw(self.picture)[1]

    @property
    def height(self) -> int:
        return picture_hw(self.picture)[0]


def picture_hw(picture: av.VideoFrame | np.ndarray) -> tuple[int, int]:
    """(height, width) of a decoded frame or of a BGR array."""
    if isinstance(picture, av.VideoFrame):
        return int(picture.height), int(picture.width)
    return int(picture.shape[0]), int(picture.shape[1])


@dataclass(frozen=True, slots=True)
class Still:
    """A frame in which nothing moved since the model last ran on its source: it passes
    every stage without being prepared or inferred, and its source's objects are held
    where they were last seen."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame was fitted into the model input: input = frame * scale + pad."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int


@dataclass(frozen=True, slots=True)
class OnDevice:
    """A frame left as its planes on the GPU, for the model's worker to letterbox straight
    into the batch buffer the model reads (`model.prepare_on`)."""

    planes: Planes
    shape: tuple[int, int, int]  # of the tensor it becomes: 3 x H x W


@dataclass(frozen=True, slots=True)
class Prepared:
    """A frame made ready for the model: one CHW float32 tensor, or its planes on the GPU."""

    frame: Frame
    tensor: np.ndarray | OnDevice  # 3 x H x W float32, the model's layout and scale
    letterbox: Letterbox


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes of one frame as parallel arrays, in source pixels (x1, y1, x2, y2)."""

    xyxy: np.ndarray  # (N, 4) float32
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        if self.confidence.shape != (n,) or self.class_id.shape != (n,):
            raise ValueError(
                f"confidence and class_id must have shape ({n},), "
                f"got {self.confidence.shape} and {self.class_id.shape}"
            )

    def __len__(self) -> int:
        return len(self.xyxy)


@dataclass(frozen=True, slots=True)
class Inferred:
    """A frame with the raw model output that belongs to it (no batch axis)."""

    prepared: Prepared
    output: np.ndarray
    late: bool  # finished after its deadline; kept, since the compute is spent
    finished_ns: int  # when its model call ended (the pipeline clock's monotonic_ns)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A picture that goes to Redis with an event, under its own key, before the event."""

    key: str
    data: bytes
    ttl_s: float


@dataclass(frozen=True, slots=True)
class Emitted:
    """An event on its way to the sinks, with the capture time of the frame that caused
    it, which the latency is measured from (None: no frame caused it), and its JSON.

    The JSON is made once, by `of`, on the thread that makes the event: the Redis sink's
    thread only writes it (serialising there took a third of its throughput)."""

    event: Event
    captured_ns: int | None
    json: str
    attachment: Attachment | None = None  # its snapshot, for the Redis sink to store

    @classmethod
    def of(
        cls, event: Event, captured_ns: int | None, attachment: Attachment | None = None
    ) -> Emitted:
        # orjson: the event JSON was 40 % of the sink thread's time with the standard library.
        return cls(event, captured_ns, orjson.dumps(event.to_dict()).decode(), attachment)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A source changed state (connected, ended, ...): becomes a `source_status` event."""

    source_id: str
    status: SourceState
    at: float  # wall clock
    detail: str | None = None
    problem: SourceProblem | None = None  # down for something a person must fix


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A camera-health condition raised or cleared at `frame`: becomes a `camera_health`
    event."""

    source_id: str
    health: CameraHealth
    frame: Frame


class EndReason(StrEnum):
    EOF = "eof"  # the file or stream ended
    STOPPED = "stopped"  # the pipeline was asked to stop
    FAILED = "failed"  # the source failed for good


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The last item of one source, in band, after all its frames."""

    source_id: str
    reason: EndReason


Control = SourceStatus | HealthChange | EndOfStream


def source_of(item: Frame | Still | Prepared | Inferred | object) -> str:
    """The source of a frame at any stage of the pipeline."""
    if isinstance(item, Inferred):
        return item.prepared.frame.source_id
    if isinstance(item, Prepared | Still):
        return item.frame.source_id
    if isinstance(item, Frame):
        return item.source_id
    raise TypeError(f"not a frame: {type(item).__name__}")
