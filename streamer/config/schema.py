"""The pipeline file's schema: typed sections, closed to unknown keys.

Each field's docstring is its documentation: `docs/pipeline-reference.md` is generated
from them (`python -m tools.make_docs`), and a test fails when that file is stale.
Reading a file is `streamer.config.loader`'s job; `streamer run`'s flags are applied by
`streamer.config.overrides`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from streamer.enums import StrEnum
from streamer.events.event import (
    OBJECT_EVENT_TYPES,
    Anchor,
    DriftFeature,
    EventType,
    HealthCondition,
)
from streamer.runtime.queues import Overflow

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# What `events.emit` may list: source_status is always emitted.
EMITTABLE_TYPES = (*OBJECT_EVENT_TYPES, EventType.DETECTIONS)


class SkipFrames(StrEnum):
    NONE = "none"
    NONREF = "nonref"  # frames no other frame refers to (B-frames)
    NONKEY = "nonkey"  # all but keyframes


class HwAccel(StrEnum):
    NONE = "none"
    AUTO = "auto"
    CUDA = "cuda"
    VAAPI = "vaapi"
    VIDEOTOOLBOX = "videotoolbox"


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class ModelFormat(StrEnum):
    AUTO = "auto"
    YOLOV8 = "yolov8"
    YOLO11 = "yolo11"  # the same outputs as YOLOv8
    YOLOX = "yolox"


class Provider(StrEnum):
    """Execution providers, by streamer's short names: ONNX Runtime's, and OpenVINO's
    runtime."""

    TENSORRT = "tensorrt"
    CUDA = "cuda"
    OPENVINO = "openvino"
    CPU = "cpu"


DEFAULT_PROVIDERS = (Provider.TENSORRT, Provider.CUDA, Provider.CPU)


class PrepareOn(StrEnum):
    """Where frames are letterboxed into the model's input."""

    AUTO = "auto"  # the GPU when the model runs on one and CuPy can, else the CPU
    CPU = "cpu"
    GPU = "gpu"


URI_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# What a source URL may be: FFmpeg's network protocols that carry live video.
NETWORK_SCHEMES = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp", "rtp"}
)
LOCAL_SCHEMES = frozenset({"file", "v4l2"})
# A pipeline file is small: a few hundred values. Past this many, counting each use of a
# YAML alias again, validating it (and listing its errors) could take minutes.
MAX_VALUES = 100_000
MAX_SOURCES = 1000
MAX_WORKERS = 256
AUTO = "auto"
MAX_REGIONS = 1000  # zones, and lines
MAX_CORNERS = 1000
MAX_LABELS = 10_000
# Zones and lines are in source pixels; they may reach past the frame's edges, but a
# coordinate this far out (8K video is 7680 wide) is a typo, and inf or nan would make
# every side test false.
MAX_COORDINATE = 100_000.0
# Each frame queued before the events holds a picture or a tensor: megabytes.
MAX_FRAME_QUEUE = 1024
MAX_EVENT_QUEUE = 100_000


class _Model(BaseModel):
    # Attribute docstrings become the fields' descriptions: the reference is made of them.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ReconnectConfig(_Model):
    """How a live source that failed is retried: exponential backoff with jitter."""

    initial_delay_s: Annotated[float, Field(gt=0, le=600)] = 0.5
    """The first wait after a failure; it doubles after each failed attempt..."""
    max_delay_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """...up to this."""
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    """Each wait is randomised by up to this fraction, so cameras behind one switch that
    failed together do not all retry in the same instant."""
    healthy_after_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    """A connection that lasted this long resets the backoff to initial_delay_s."""

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError("max_delay_s must be at least initial_delay_s")
        return self


def _check_url(uri: str) -> None:
    """What can be known wrong with a URL without the network: ValueError saying what."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in LOCAL_SCHEMES:
        return
    if scheme not in NETWORK_SCHEMES:
        known = ", ".join(sorted(NETWORK_SCHEMES))
        raise ValueError(f"{scheme}:// is not a kind of URL streamer reads ({known}, or a file)")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    if not parts.hostname and scheme not in ("udp", "rtp"):  # udp://@:1234 listens
        raise ValueError("has no host")


Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Point = tuple[Coordinate, Coordinate]


def _has_area(polygon: list[Point]) -> list[Point]:
    # Shoelace formula: a polygon whose corners are all on one line contains nothing.
    twice_area = sum(
        x0 * y1 - x1 * y0
        for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True)
    )
    if math.isclose(twice_area, 0.0, abs_tol=1e-9):
        raise ValueError("the polygon has no area (its corners are on one line)")
    return polygon


Polygon = Annotated[
    list[Point], Field(min_length=3, max_length=MAX_CORNERS), AfterValidator(_has_area)
]


class MotionConfig(_Model):
    """Motion-gated inference: the model runs on a frame only when something moved in
    it since the background was learnt, and at least every `detect_every_s`; on the
    other frames the objects are held where they were (docs/performance.md, "Motion
    gating", has the measurements behind the defaults)."""

    threshold: Annotated[int, Field(ge=1, le=255)] = 20
    """Grey levels (0-255) a pixel must differ from the background by to have moved."""
    min_area: Annotated[float, Field(gt=0, le=1)] = 0.0005
    """Share of the picture a moving region must cover (0.0005: 460 pixels of a 720p
    frame, about a person 40 px tall)."""
    background_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """How fast the background takes in a change (its time constant, on the source's
    clock): an object that stopped becomes background after about twice this."""
    detect_every_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """The model runs at least this often on a still picture, so that objects that do
    not move (a parked car, a person standing) stay seen."""
    masks: list[Polygon] = Field(default_factory=list, max_length=MAX_REGIONS)
    """Polygons (corners in source pixels) where motion is ignored: a clock, trees in
    the wind, the camera's timestamp overlay. The model still sees the whole frame."""


class SourceConfig(_Model):
    id: Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
    """Unique within the file; used in events and stream keys."""
    uri: Annotated[str, Field(min_length=1)]
    """A video file path (relative to the pipeline file), a URL (rtsp://, http(s):// incl.
    HLS), or a V4L2 camera device (/dev/video0)."""
    realtime: bool | None = None
    """Pace the source like a camera. Default: live sources yes, files no (every frame)."""
    max_latency_ms: Annotated[int, Field(gt=0, le=600_000)] | None = None
    """Overrides realtime.max_latency_ms for this source."""
    max_fps: Annotated[float, Field(gt=0, le=1000)] | None = None
    """Keep at most this many frames per second, evenly spaced (default: every frame)."""
    skip_frames: SkipFrames = SkipFrames.NONE
    """Frames the decoder does not even decode: nonref skips frames no other frame refers
    to (B-frames), nonkey all but keyframes. Saves decoding CPU under overload."""
    hwaccel: HwAccel = HwAccel.NONE
    """Decode on a hardware decoder: cuda (NVIDIA NVDEC), vaapi (Intel, AMD on Linux),
    videotoolbox (macOS); auto takes the first one usable here. Frames come back to system
    memory for preprocessing. One that this machine lacks gives one warning, and the source
    is decoded in software."""
    transport: Transport = Transport.TCP
    """RTSP transport. TCP loses no packets and passes NAT; UDP has less delay."""
    open_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    """Live sources: how long opening may take (FFmpeg caps TCP connects near 5 s)."""
    read_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    """Live sources: a stream that sends nothing this long is treated as disconnected."""
    stall_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """Live sources: a connection that delivers no frame this long (data may still flow,
    nothing decodes) is treated as stalled and reconnected."""
    reconnect: ReconnectConfig = ReconnectConfig()
    """Live sources: how a source that failed is retried."""
    ffmpeg_options: dict[str, str | int | float] = Field(default_factory=dict)
    """Extra FFmpeg demuxer/protocol options, e.g. {fflags: nobuffer, buffer_size: 1048576};
    a name FFmpeg does not know is warned about at start."""
    motion: MotionConfig | Literal[False] | None = Field(
        default=None,
        json_schema_extra={"reference_type": "[mapping](#motion), `true` or `false`"},
    )
    """Motion gating for this source: `false` turns it off, `true` on (with the
    pipeline's `motion:` settings, or the defaults); a mapping changes the pipeline's
    settings for this source (its own `masks`, say). Default: as the pipeline."""

    @field_validator("motion", mode="before")
    @classmethod
    def _motion_by_flag(cls, motion: Any) -> Any:
        return {} if motion is True else motion

    @field_validator("uri")
    @classmethod
    def _printable_uri(cls, uri: str) -> str:
        if not uri.strip():
            raise ValueError("is blank")
        if any(ord(c) < 32 for c in uri):
            raise ValueError("contains a control character (a newline, a NUL...)")
        if URI_SCHEME.match(uri):
            _check_url(uri)
        return uri

    @field_validator("ffmpeg_options")
    @classmethod
    def _usable_options(cls, options: dict[str, str | int | float]) -> dict[str, str | int | float]:
        for key, value in options.items():
            if not key or "\0" in key:
                raise ValueError(f"option name {key!r} is empty or contains a NUL character")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"option {key!r} must be a finite number")
            if isinstance(value, str) and "\0" in value:
                raise ValueError(f"option {key!r} contains a NUL character")
        return options

    @property
    def is_device(self) -> bool:
        return self.uri.startswith(("/dev/", "v4l2://"))

    @property
    def is_file(self) -> bool:
        """A video file (not a URL, not a device): the one kind that can run offline."""
        if self.is_device:
            return False
        return not URI_SCHEME.match(self.uri) or self.uri.startswith("file://")


class BatchConfig(_Model):
    max_size: Annotated[int, Field(ge=1, le=256)] = 4
    """Most frames per inference call, across all sources."""
    max_wait_ms: Annotated[float, Field(ge=0, le=10_000)] = 10.0
    """Longest wait for a batch to fill after its first frame arrived."""


def _model_path(path: Path) -> Path:
    if str(path) == ".":  # what an empty string becomes
        raise ValueError("empty: name the ONNX file")
    if "\0" in str(path):
        raise ValueError("contains a NUL character")
    return path


def _labels(names: list[str] | None) -> list[str] | None:
    """Label lists name classes: a repeated or empty name is a mistake."""
    seen: set[str] = set()
    for name in names or ():
        if not name.strip():
            raise ValueError("a label is empty")
        if name in seen:
            raise ValueError(f"label {name!r} is given twice")
        seen.add(name)
    return names


def _folder_path(path: Path | None) -> Path | None:
    if path is not None and str(path) == ".":  # what an empty string becomes
        raise ValueError("empty: name a folder, or omit the key")
    if path is not None and "\0" in str(path):
        raise ValueError("contains a NUL character")
    return path


Labels = Annotated[list[str], Field(min_length=1, max_length=MAX_LABELS)]


class ModelConfig(_Model):
    path: Path
    """The ONNX file, relative to the pipeline file."""
    format: ModelFormat = ModelFormat.AUTO
    """The detector family; auto reads it from the model file."""
    labels: Labels | None = None
    """Class names in class-id order; default: the model's metadata, or COCO for 80 classes."""
    confidence: Annotated[float, Field(ge=0, le=1)] = 0.25
    """Boxes scoring less are not reported (the tracker may still use weaker ones, see
    tracking.low_confidence)."""
    iou: Annotated[float, Field(ge=0, le=1)] = 0.45
    """IoU above which NMS suppresses the weaker of two boxes of one class."""
    classes: Labels | None = None
    """Keep only these labels (default: all). An empty list would keep nothing: omit it."""
    max_detections: Annotated[int, Field(ge=1, le=10_000)] = 300
    """Most boxes kept per frame after NMS, the most confident first."""
    input_size: Annotated[int, Field(ge=32, le=4096, multiple_of=32)] | None = None
    """For models with a dynamic input: the long side frames are scaled to (default: the
    model's metadata, else 640)."""
    providers: list[Provider] = Field(default_factory=lambda: list(DEFAULT_PROVIDERS), min_length=1)
    """Execution providers to try, in order; CPU is always the last resort. `openvino`
    (Intel CPUs and iGPUs; `pip install 'streamer[openvino]'`) is tried only when listed."""
    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    """How many batches run at once, each in its own ONNX Runtime session (default: 2 on
    the CPU when it has 2 cores or more, else 1)."""
    threads: Annotated[int, Field(ge=1, le=256)] | None = None
    """ONNX Runtime intra-op threads of each worker (default: the cores shared out among
    the workers; with one worker, one per core)."""
    device: Annotated[int, Field(ge=0, le=255)] = 0
    """The GPU (CUDA device index) the tensorrt and cuda providers run on."""
    fp16: bool = False
    """TensorRT only: let TensorRT run layers in half precision (faster on GPUs with tensor
    cores; boxes move by a fraction of a pixel). The cuda provider runs the model as given:
    for fp16 there, export the ONNX file in fp16."""
    engine_cache: Path | None = None
    """The folder where TensorRT keeps the engines it builds (minutes for a large model),
    relative to the pipeline file (default: ~/.cache/streamer/tensorrt). Empty it after
    changing TensorRT or the GPU."""
    openvino_device: Annotated[str, Field(pattern=r"^(CPU|GPU(\.\d+)?|NPU|AUTO)$")] = "CPU"
    """The device the openvino provider runs on: CPU, GPU (an Intel iGPU or Arc; GPU.1 for
    the second), NPU, or AUTO (OpenVINO's choice). Compiled models are cached in
    ~/.cache/streamer/openvino."""
    prepare_on: PrepareOn = PrepareOn.AUTO
    """Where frames are letterboxed, converted and scaled for the model. gpu: on the GPU
    the model runs on (cuda or tensorrt), a batch at a time, straight into the buffer the
    model reads, and frames decoded with `hwaccel: cuda` never leave it; needs CuPy
    (`pip install 'streamer[gpu]'`). auto: gpu where that works, else cpu. Asking for gpu
    where it cannot run gives one warning and the CPU."""
    batch: BatchConfig = BatchConfig()
    """How frames of all sources are batched into one model call."""

    _path = field_validator("path")(_model_path)
    _cache_path = field_validator("engine_cache")(_folder_path)
    _label_lists = field_validator("labels", "classes")(_labels)

    @model_validator(mode="after")
    def _fp16_needs_tensorrt(self) -> ModelConfig:
        if self.fp16 and Provider.TENSORRT not in self.providers:
            raise ValueError(
                "fp16 applies to the tensorrt provider only, which providers does not list "
                "(cuda runs the model as given)"
            )
        return self

    @property
    def family(self) -> str:
        """What `Model.load` takes: YOLO11 is read as YOLOv8."""
        return str(ModelFormat.YOLOV8 if self.format is ModelFormat.YOLO11 else self.format)


class RealtimeConfig(_Model):
    max_latency_ms: Annotated[int, Field(gt=0, le=600_000)] = 500
    """Frame deadline budget: a frame that cannot become events within this is dropped."""


class LosslessQueueConfig(_Model):
    size: Annotated[int, Field(ge=1, le=MAX_FRAME_QUEUE)] | None = None
    """Most frames it holds (default: from the batch size)."""


class QueueConfig(_Model):
    size: Annotated[int, Field(ge=1, le=MAX_FRAME_QUEUE)] | None = None
    """Most frames it holds (default: from the number of sources and the batch size)."""
    overflow: Overflow | None = None
    """What a full queue does with a new frame: block (wait, lose nothing), drop_oldest
    (the freshest frame wins), drop_newest (the new frame is refused). Default: block
    offline, drop_oldest when any source is live."""


class EventQueueConfig(_Model):
    size: Annotated[int, Field(ge=1, le=MAX_EVENT_QUEUE)] | None = None
    """Most events waiting for each sink (Redis, in process); when full, the pipeline
    waits (default 4096)."""


class QueuesConfig(_Model):
    """The queue in front of each stage. Defaults depend on whether the sources are live.

    Only the queues before inference may drop: after it the compute is spent, and the
    events queue holds what a consumer counts on."""

    decoded: QueueConfig = QueueConfig()
    """Decoded frames, before preprocessing."""
    prepared: QueueConfig = QueueConfig()
    """Frames ready for the model, before batching."""
    inferred: LosslessQueueConfig = LosslessQueueConfig()
    """Model outputs, before postprocessing; never drops."""
    events: EventQueueConfig = EventQueueConfig()
    """Events, before each sink; never drops."""


class SnapshotStore(StrEnum):
    REDIS = "redis"  # a key of its own beside the stream, expiring after ttl_s
    DISK = "disk"  # a file under `folder`, removed after ttl_s


class SnapshotsConfig(_Model):
    """A JPEG of the frame that made an event (its boxes, zones and lines drawn), named in
    the event's `snapshot`, so that a consumer can show what happened."""

    store: SnapshotStore = SnapshotStore.REDIS
    """Where the pictures go: Redis (the pipeline's sink) or disk."""
    types: list[EventType] = Field(
        default_factory=lambda: [
            EventType.OBJECT_APPEARED, EventType.LINE_CROSSED, EventType.ZONE_ENTERED
        ]
    )  # fmt: skip
    """The events that carry one."""
    ttl_s: Annotated[float, Field(gt=0, le=30 * 86_400)] = 86_400.0
    """How long a picture is kept: Redis expires its key, the disk store removes its file."""
    folder: Path = Path("snapshots")
    """store: disk: the folder (relative to the pipeline file); pictures go in
    FOLDER/PIPELINE/SOURCE/."""
    quality: Annotated[int, Field(ge=1, le=100)] = 80
    """JPEG quality."""

    @field_validator("types")
    @classmethod
    def _object_events(cls, types: list[EventType]) -> list[EventType]:
        for type_ in types:
            if type_ not in OBJECT_EVENT_TYPES:
                names = ", ".join(t.value for t in OBJECT_EVENT_TYPES)
                raise ValueError(f"{type_.value} has no frame of its own to show (one of: {names})")
        return types


class EventsConfig(_Model):
    emit: list[EventType] = Field(default_factory=lambda: list(OBJECT_EVENT_TYPES))
    """Event types to emit besides source_status, which is always emitted. `detections`
    (every frame's boxes) is high volume: a pipeline turns it on."""
    snapshots: bool | SnapshotsConfig = False
    """true (or the settings below) gives object_appeared, line_crossed and zone_entered
    events a picture of their frame, named in their `snapshot`."""

    @property
    def snapshot_settings(self) -> SnapshotsConfig | None:
        if self.snapshots is True:
            return SnapshotsConfig()
        return self.snapshots or None

    @field_validator("emit", mode="before")
    @classmethod
    def _known_types(cls, emit: Any) -> Any:
        # Strings only: pydantic's own message says what else is wrong.
        for name in emit if isinstance(emit, list) else ():
            if name in (EventType.CAMERA_HEALTH, EventType.DRIFT):
                raise ValueError(f"{name!r} is emitted by the `health:` section, not listed here")
            if isinstance(name, str) and name not in EMITTABLE_TYPES:
                available = ", ".join(t.value for t in EMITTABLE_TYPES)
                raise ValueError(f"{name!r} is not an event type (available: {available})")
        return emit


class TrackingConfig(_Model):
    """Multi-object tracking (ByteTrack-style), run when object, zone or line events are on."""

    high_confidence: Annotated[float, Field(gt=0, le=1)] | None = None
    """Boxes at least this confident start tracks and are matched first (default: the
    model's confidence)."""
    low_confidence: Annotated[float, Field(gt=0, le=1)] = 0.1
    """Weaker boxes down to this only keep existing tracks alive (through occlusions)."""
    match_iou: Annotated[float, Field(gt=0, le=1)] = 0.2
    """Least overlap between a track's predicted box and a detection to match them."""
    confirm_hits: Annotated[int, Field(ge=1, le=1000)] = 3
    """Detections a new track needs before it is an object (object_appeared)."""
    confirm_s: Annotated[float, Field(ge=0, le=3600)] = 0.1
    """And seconds it must have been seen for: a box that flickers for a moment (a
    misclassified sliver at the frame's edge) is no object."""
    lost_after_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    """An object last seen at the edge of the picture (not moving in from it) and unseen
    this long has left (object_left). Measured on the source's clock, so frames dropped
    under load do not end tracks."""
    max_hidden_s: Annotated[float, Field(ge=0, le=3600)] = 5.0
    """An object last seen inside the picture may be hidden this long (behind a pillar, a
    van, another person) and come back as itself; only then has it left. Never shorter
    than lost_after_s."""
    class_groups: Annotated[list[Labels], Field(max_length=MAX_LABELS)] | None = Field(
        default=None, json_schema_extra={"reference_type": "list of label lists"}
    )
    """Labels that are one kind of object to the tracker: a box of any of them may
    continue an object of another (a detector that calls one van a car, then a truck).
    An object's label is the one with the most confidence summed over its boxes, not its
    latest box's. Default: [[car, truck, bus]], for the labels the model has; [] for
    none."""


class _Region(_Model):
    name: Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
    """Unique among the zones (or the lines); named in events and stats."""
    labels: Labels | None = None
    """Only objects with these labels (default: every label). An empty list would match
    nothing: omit it."""
    sources: Annotated[list[str], Field(min_length=1, max_length=MAX_SOURCES)] | None = None
    """Only on these sources (default: every source)."""
    anchor: Anchor = Anchor.BOTTOM_CENTER
    """The point of an object's box that is judged: where a person's feet are, by default."""
    hysteresis: Annotated[float, Field(ge=0, le=2)] = 0.1
    """Dead band on each side of the boundary, as a fraction of the object's box height:
    an object must be this far past it to change side, so jitter gives no extra events."""

    _label_list = field_validator("labels")(_labels)


class ZoneConfig(_Region):
    polygon: Polygon
    """Corners in source pixels, in order."""


class LineConfig(_Region):
    points: tuple[Point, Point]
    """From A to B in source pixels; crossing to the side where cross(B-A, P-A) > 0 (to the
    right of A->B on screen, y down) is `in`."""

    @field_validator("points")
    @classmethod
    def _not_a_point(cls, points: tuple[Point, Point]) -> tuple[Point, Point]:
        if points[0] == points[1]:
            raise ValueError("the two points of a line must differ")
        return points


class RedisSinkConfig(_Model):
    url: str | None = None
    """Default: $STREAMER_REDIS_URL, then redis://localhost:6379/0 (--redis-url wins)."""
    stream: Annotated[str, Field(min_length=1)] = "streamer:{pipeline}:events"
    """Stream key; {pipeline} and {source} are replaced."""
    maxlen: Annotated[int, Field(ge=1)] = 100_000
    """Approximate length the stream is trimmed to (XADD MAXLEN ~)."""
    spool_path: Path | None = None
    """A file (relative to the pipeline file) that keeps the events Redis has not taken
    yet, so that a crash or a restart loses none of them; default: they are kept in memory."""
    spool_max_events: Annotated[int, Field(ge=1)] = 100_000
    """Most events kept while Redis is away; beyond, the oldest are lost (and counted)."""
    wait_s: Annotated[float, Field(ge=0, le=86_400)] = 0.0
    """How long a run that starts before Redis does waits for it, retrying, before it
    gives up (exit 2); 0: at once. Once running, Redis going away never stops a run."""

    @field_validator("stream")
    @classmethod
    def _known_placeholders(cls, stream: str) -> str:
        for name in re.findall(r"{([^}]*)}", stream):
            if name not in ("pipeline", "source"):
                raise ValueError(f"unknown placeholder {{{name}}}; use {{pipeline}} or {{source}}")
        try:
            stream.format(pipeline="p", source="s")
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(
                f"not a valid template ({exc}); write braces as {{{{ and }}}}"
            ) from None
        return stream


class SinkConfig(_Model):
    redis: RedisSinkConfig = RedisSinkConfig()
    """The Redis Streams the events are written to."""


NO_SINK = "none"


class RayConfig(_Model):
    """Shards as actors on a Ray cluster (DESIGN.md section 11); needs the `ray` extra."""

    address: Annotated[str, Field(min_length=1)] = "auto"
    """The cluster: `auto` (the one this machine joined with `ray start`), `HOST:PORT`
    (its head node), or `ray://HOST:10001` (Ray Client). `--ray ADDRESS` wins."""
    cpus_per_shard: Annotated[float, Field(ge=0, le=1024)] = 1.0
    """CPUs each shard asks Ray for: a shard keeps about one busy."""
    gpus_per_shard: Annotated[float, Field(ge=0, le=64)] = 0.0
    """GPUs (or a fraction of one) each shard asks for."""
    memory_mb_per_shard: Annotated[int, Field(ge=1)] | None = None
    """Memory each shard asks for, in MiB; default: none reserved."""
    max_restarts: Annotated[int, Field(ge=-1)] = -1
    """How many times a shard that dies (its process, or its node) is started again;
    -1: always. Beyond it the run fails."""


class ConditionConfig(_Model):
    """One camera-health condition's settings; what is left out keeps its default
    (docs/operations.md, "Camera health", has them with the measurements behind them)."""

    enabled: bool = True
    """false: the condition is not watched."""
    threshold: float | None = None
    """The measure's bound the condition is raised beyond (brightness: the darker bound,
    a ratio to the reference; the brighter bound is its inverse)."""
    clear_at: float | None = None
    """The bound it is cleared beyond: between the threshold and normal (hysteresis)."""
    hold_s: Annotated[float, Field(ge=0, le=86_400)] | None = None
    """How long the measure must stay past the threshold before the condition is raised."""
    clear_s: Annotated[float, Field(ge=0, le=86_400)] | None = None
    """How long it must stay back past `clear_at` before the condition is cleared."""


class DriftConfig(_Model):
    """Detection drift: each window of a source's detections compared with its reference
    profile, feature by feature, by the Jensen-Shannon divergence (0..1)."""

    enabled: bool = True
    """false: no drift events."""
    window_s: Annotated[float, Field(gt=0, le=30 * 86_400)] = 300.0
    """The length of each window judged, in the source's time."""
    thresholds: dict[DriftFeature, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict
    )
    """Per feature (`confidence`, `class_mix`, `box_size`, `detections_per_frame`), the
    divergence beyond which it drifted; the ones left out keep their defaults."""
    min_frames: Annotated[int, Field(ge=1)] = 100
    """A window (and the reference) with fewer processed frames is not judged."""
    min_detections: Annotated[int, Field(ge=1)] = 100
    """A window with fewer boxes is not judged (a quiet night is no drift); the
    baseline goes on learning until it has this many."""


class HealthConfig(_Model):
    """Camera health and detection drift (DESIGN.md section 12): `camera_health` and
    `drift` events, per-source gauges, the stats file's `health` section."""

    baseline_s: Annotated[float, Field(gt=0, le=30 * 86_400)] = 60.0
    """Each source's reference is learnt from its first this many seconds (its own
    time), unless `profile` has one for it."""
    profile: Path | None = None
    """A profile file written by `streamer profile` (relative to the pipeline file):
    the references of the sources it has."""
    sample_fps: Annotated[float, Field(gt=0, le=30)] = 4.0
    """How many pictures a second of each source are measured (a small grey thumbnail),
    at most: a source's `max_fps` keeps fewer frames."""
    conditions: dict[HealthCondition, ConditionConfig] = Field(default_factory=dict)
    """Per condition (`blackout`, `covered`, `frozen`, `moved`, `blur`, `brightness`),
    settings that differ from the defaults."""
    drift: DriftConfig = DriftConfig()
    """Detection drift."""


class PipelineConfig(_Model):
    name: Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
    """The pipeline's name: in events, stream keys and logs."""
    sources: Annotated[list[SourceConfig], Field(min_length=1, max_length=MAX_SOURCES)]
    """The video sources: files, cameras, streams."""
    model: ModelConfig
    """The detector."""
    realtime: RealtimeConfig = RealtimeConfig()
    """Frame deadlines for live sources."""
    queues: QueuesConfig = QueuesConfig()
    """The queues between stages (the defaults suit most pipelines)."""
    events: EventsConfig = EventsConfig()
    """Which events are emitted."""
    tracking: TrackingConfig = TrackingConfig()
    """How boxes become tracked objects."""
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=MAX_REGIONS)
    """Polygons: objects entering and leaving them give zone_entered and zone_exited."""
    lines: list[LineConfig] = Field(default_factory=list, max_length=MAX_REGIONS)
    """Segments: objects crossing them give line_crossed, with a direction."""
    sink: SinkConfig | None = Field(
        default=SinkConfig(), json_schema_extra={"reference_type": "mapping, or `none`"}
    )
    """Where events go besides in-process consumers: Redis (the default), or `none` for
    a pipeline whose events are only read in process (`Pipeline.events()`, `on_event`;
    `streamer run` then prints them as JSON lines)."""
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] | Literal["auto"] = Field(
        default=1, json_schema_extra={"reference_type": "integer, or `auto`"}
    )
    """Shards on this machine: the sources are split over this many processes, each with
    its own model session, supervised (a shard that dies is restarted); `auto` sizes it
    from the cores, the GPUs and the model's measured cost. 1 runs in one process. Needs
    a Redis sink when more than 1."""
    ray: RayConfig | None = None
    """Run the shards on a Ray cluster instead of this machine's processes (`--ray`)."""
    motion: MotionConfig | None = Field(
        default=None, json_schema_extra={"reference_type": "[mapping](#motion), `true` or `false`"}
    )
    """Run the model only on frames where something moved (and every `detect_every_s`):
    `true` or `{}` for the defaults; off unless set. Each source may turn it off, on,
    or change it (`sources[].motion`)."""
    health: HealthConfig | None = Field(
        default=None, json_schema_extra={"reference_type": "[mapping](#health), `true` or `false`"}
    )
    """Watch each camera's picture and the detector's output: `camera_health` and
    `drift` events (`true` or `{}` for the defaults)."""

    @field_validator("sink", mode="before")
    @classmethod
    def _none_by_name(cls, sink: Any) -> Any:
        if sink is None:
            raise ValueError(f"empty: write `{NO_SINK}` for no Redis, or leave sink out")
        return None if sink == NO_SINK else sink

    @field_validator("health", "motion", mode="before")
    @classmethod
    def _section_by_flag(cls, section: Any) -> Any:
        if isinstance(section, bool):
            return {} if section else None
        return section

    def motion_of(self, source: SourceConfig) -> MotionConfig | None:
        """The motion gating of `source` (None: every frame goes to the model): the
        pipeline's, with what the source's own `motion:` changes."""
        own, base = source.motion, self.motion
        if own is False:
            return None
        if own is None:
            return base
        if base is None:
            return own
        return base.model_copy(update={name: getattr(own, name) for name in own.model_fields_set})

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineConfig:
        seen: set[str] = set()
        for source in self.sources:
            if source.id in seen:
                raise ValueError(f"source id {source.id!r} is used twice")
            seen.add(source.id)
        for kind, regions in (("zone", self.zones), ("line", self.lines)):
            names: set[str] = set()
            for region in regions:
                if region.name in names:
                    raise ValueError(f"{kind} name {region.name!r} is used twice")
                names.add(region.name)
                for source_id in region.sources or ():
                    if source_id not in seen:
                        raise ValueError(f"{kind} {region.name!r}: no source with id {source_id!r}")
        return self

    @property
    def tracks_objects(self) -> bool:
        """Whether any event needs tracking."""
        return any(t in OBJECT_EVENT_TYPES for t in self.events.emit)

    @property
    def redis(self) -> RedisSinkConfig | None:
        """The Redis sink's settings; None for `sink: none`."""
        return None if self.sink is None else self.sink.redis
