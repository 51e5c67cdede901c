"""The latest processed frame of each source, annotated only when someone asks.

The postprocessing thread hands every frame to `FrameBoard.show` with the boxes and
track ids it found, and `show` hands it on to the recorders, if any. While someone looks
at a source (a snapshot of it was asked for in the last `WATCHED_S`), it also keeps a
reference to the source's latest frame (the decoded picture is never changed, see
`Frame`); otherwise none, so a source nobody looks at holds no extra frame (a 4K frame is
12 MB). Converting, drawing and JPEG encoding happen on the thread that asks for a
snapshot (the preview page, a recording), so a pipeline nobody looks at spends nothing on
drawing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer.preview.drawing import Regions, blank, draw_detections, draw_notice, draw_regions
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.messages import Control, Detections, Frame
from streamer.runtime.queues import StageQueue

JPEG_QUALITY = 80
WATCHED_S = 30.0  # after a snapshot, latest frames are kept this long for the next one
FIRST_LOOK_S = 1.0  # how long a first snapshot waits for a frame to be shown


@dataclass(frozen=True, slots=True)
class Shown:
    """A processed frame with what the pipeline found in it."""

    frame: Frame
    boxes: Detections  # those shown (from the model's confidence up)
    track_ids: tuple[int | None, ...]  # per box: the object it belongs to, once confirmed


def to_bgr(picture: av.VideoFrame | np.ndarray, reformatter: VideoReformatter) -> np.ndarray:
    """A new H x W x 3 BGR array of a decoded picture (never the picture's own memory).

    Converted with the caller's `reformatter`, never the frame's own: several threads
    (the preview, a recording, preprocessing) read one frame at once, and a scaler used
    by two threads at once crashes the process."""
    if isinstance(picture, av.VideoFrame):
        return reformatter.reformat(picture, format="bgr24").to_ndarray()
    return np.array(picture, copy=True)


def annotate(
    shown: Shown, regions: Regions, labels: Sequence[str], reformatter: VideoReformatter
) -> np.ndarray:
    """The frame as BGR with its zones, lines and boxes drawn."""
    image = to_bgr(shown.frame.picture, reformatter)
    draw_regions(image, regions)
    draw_detections(image, shown.boxes, shown.track_ids, labels)
    return image


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} picture as JPEG")
    return bytes(data)


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a JPEG picture")
    return np.asarray(image)


class FrameBoard:
    """Per source, the last frame shown; JPEG snapshots of it on request."""

    def __init__(
        self,
        labels: Sequence[str],
        regions: Mapping[str, Regions],
        recorders: Sequence[StageQueue[Shown]] = (),
        stop: threading.Event | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`recorders`: inboxes that get every frame shown, and every control item, in
        order (lossless: the postprocessing thread waits for room, unless `stop` is set)."""
        self._labels = list(labels)
        self._regions = dict(regions)
        self._recorders = list(recorders)
        self._stop = stop or threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._shown = threading.Condition(self._lock)
        self._watched_until_ns: dict[str, int] = {}  # per source: its frames are kept
        self._drawing = threading.Lock()  # one snapshot drawn at a time, with:
        self._reformatter = VideoReformatter()
        self._latest: dict[str, Shown] = {}
        self._jpegs: dict[str, tuple[tuple[int, str | None], bytes]] = {}

    @property
    def source_ids(self) -> list[str]:
        return list(self._regions)

    def regions(self, source_id: str) -> Regions:
        return self._regions.get(source_id, Regions())

    def show(self, shown: Shown) -> None:
        source_id = shown.frame.source_id
        now_ns = self._clock.monotonic_ns()
        with self._lock:
            if now_ns < self._watched_until_ns.get(source_id, 0):
                self._latest[source_id] = shown
                self._shown.notify_all()
            elif source_id in self._latest:
                del self._latest[source_id]  # nobody looks any more: hold no frame
        for inbox in self._recorders:
            inbox.put(shown, self._stop)

    def held(self) -> set[str]:
        """The sources whose latest frame is kept now."""
        with self._lock:
            return set(self._latest)

    def control(self, item: Control) -> None:
        for inbox in self._recorders:
            inbox.put_control(item)

    def annotated(self, shown: Shown, reformatter: VideoReformatter) -> np.ndarray:
        """`shown` drawn; `reformatter`: the calling thread's own."""
        return annotate(shown, self.regions(shown.frame.source_id), self._labels, reformatter)

    def snapshot(self, source_id: str, notice: str | None = None) -> bytes:
        """The latest frame of `source_id` annotated, as JPEG; dimmed with `notice` across
        it (a source that is down), or a blank picture with it before any frame came.
        KeyError for a source the pipeline does not have."""
        if source_id not in self._regions:
            raise KeyError(source_id)
        now_ns = self._clock.monotonic_ns()
        with self._lock:
            first_look = now_ns >= self._watched_until_ns.get(source_id, 0)
            self._watched_until_ns[source_id] = now_ns + int(WATCHED_S * 1e9)
            if first_look:  # nobody looked lately, so no frame was kept: the next one is
                self._shown.wait_for(lambda: source_id in self._latest, FIRST_LOOK_S)
            shown = self._latest.get(source_id)
            cached = self._jpegs.get(source_id)
        key = (-1 if shown is None else shown.frame.index, notice)
        if cached is not None and cached[0] == key:
            return cached[1]  # several viewers of one frame: drawn and encoded once
        with self._drawing:
            if shown is None:
                image = blank()
                draw_regions(image, self.regions(source_id))
            else:
                image = self.annotated(shown, self._reformatter)
            if notice is not None:
                image = draw_notice(image, notice)
            data = encode_jpeg(image)
        with self._lock:
            self._jpegs[source_id] = (key, data)
        return data
