"""Fit a frame into the model input: letterbox, channel order, scale, CHW float32."""

from __future__ import annotations

from collections.abc import Iterable

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer.analytics.boxes import letterbox_geometry
from streamer.device.arrays import ArrayDevice
from streamer.device.prepare import planes_of
from streamer.models import Model, ModelSpec
from streamer.models.families import PAD_VALUE
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.deadlines import WorkEstimate, is_expired
from streamer.runtime.messages import DropReason, Frame, Letterbox, OnDevice, Prepared, Still
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Stage


def letterbox_image(
    image: np.ndarray,
    dst_hw: tuple[int, int],
    lb: Letterbox,
    pad_value: int = PAD_VALUE,
) -> np.ndarray:
    """An H x W x 3 uint8 BGR `image` resized by `lb` and padded to `dst_hw`."""
    h, w = image.shape[:2]
    new_w, new_h = round(w * lb.scale_x), round(h * lb.scale_y)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dst_h, dst_w = dst_hw
    return cv2.copyMakeBorder(
        image,
        lb.pad_y,
        dst_h - new_h - lb.pad_y,
        lb.pad_x,
        dst_w - new_w - lb.pad_x,
        cv2.BORDER_CONSTANT,
        value=(pad_value, pad_value, pad_value),
    )


def to_tensor(image_bgr: np.ndarray, rgb: bool, scale: float) -> np.ndarray:
    """H x W x 3 uint8 BGR -> 3 x H x W float32 in the model's channel order and scale."""
    blob = cv2.dnn.blobFromImage(image_bgr, scalefactor=scale, swapRB=rgb)
    return np.asarray(blob[0])


def decoded_to_tensor(
    picture: av.VideoFrame,
    dst_hw: tuple[int, int],
    lb: Letterbox,
    spec: ModelSpec,
    reformatter: VideoReformatter,
) -> np.ndarray:
    """A decoded frame straight to the model's 3 x H x W float32 input: one swscale pass
    from the decoder's format to planar RGB at the letterboxed size, then each plane
    scaled into its place in a tensor padded with grey. No packed BGR image, no
    transposition: 1.6 ms a 720p frame against 2.5 through BGR, OpenCV's border and blob
    (and slightly closer to a full-size BGR frame resized by OpenCV)."""
    h, w = picture.height, picture.width
    new_w, new_h = round(w * lb.scale_x), round(h * lb.scale_y)
    resized = reformatter.reformat(
        picture, width=new_w, height=new_h, format="gbrp", interpolation="BILINEAR"
    )
    g, b, r = (
        np.frombuffer(memoryview(plane), np.uint8).reshape(new_h, plane.line_size)[:, :new_w]
        for plane in resized.planes
    )
    tensor = np.empty((3, *dst_hw), np.float32)
    top, left, bottom, right = lb.pad_y, lb.pad_x, lb.pad_y + new_h, lb.pad_x + new_w
    grey = PAD_VALUE * spec.scale
    tensor[:, :top] = grey
    tensor[:, bottom:] = grey
    tensor[:, top:bottom, :left] = grey
    tensor[:, top:bottom, right:] = grey
    scale = np.float32(spec.scale)
    for channel, plane in enumerate((r, g, b) if spec.rgb else (b, g, r)):
        np.multiply(plane, scale, out=tensor[channel, top:bottom, left:right], casting="unsafe")
    return tensor


def prepare(
    frame: Frame,
    spec: ModelSpec,
    input_hw: tuple[int, int],
    reformatter: VideoReformatter | None = None,
    device: ArrayDevice | None = None,
) -> Prepared:
    """`frame` fitted into the model input. With a `device` (batches prepared on the GPU),
    a decoded picture in a layout the GPU path reads is only described: its planes, to be
    letterboxed with its batch."""
    lb = letterbox_geometry((frame.height, frame.width), input_hw, spec.centered)
    if device is not None and isinstance(frame.picture, av.VideoFrame):
        planes = planes_of(frame.picture, device.xp)
        if planes is not None:
            return Prepared(frame=frame, tensor=OnDevice(planes, (3, *input_hw)), letterbox=lb)
    return Prepared(frame=frame, tensor=tensor_of(frame, spec, input_hw, reformatter), letterbox=lb)


def tensor_of(
    frame: Frame,
    spec: ModelSpec,
    input_hw: tuple[int, int],
    reformatter: VideoReformatter | None = None,
) -> np.ndarray:
    """`frame` as the model's 3 x H x W input, prepared on the CPU."""
    lb = letterbox_geometry((frame.height, frame.width), input_hw, spec.centered)
    if isinstance(frame.picture, av.VideoFrame):
        return decoded_to_tensor(
            frame.picture, input_hw, lb, spec, reformatter or VideoReformatter()
        )
    return to_tensor(letterbox_image(frame.picture, input_hw, lb), spec.rgb, spec.scale)


class PreprocessStage(Stage[Frame | Still, Prepared | Still]):
    """Letterboxes each frame to the model input, unless it can no longer make its deadline.
    A still frame passes as it is: the model will not see it."""

    name = "preprocess"

    def __init__(
        self, model: Model, estimate: WorkEstimate, stats: RunStats, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._model = model
        self._clock = clock
        self._estimate = estimate
        self._stats = stats
        self._input_hw: dict[tuple[int, int], tuple[int, int]] = {}
        self._reformatter = VideoReformatter()  # keeps its scaler between frames

    def process(self, item: Frame | Still) -> Iterable[Prepared | Still]:
        if isinstance(item, Still):
            return (item,)
        if is_expired(item.deadline_ns, self._clock.monotonic_ns(), self._estimate.reserve_ns()):
            self._stats.frame_dropped(self.name, DropReason.DEADLINE.value, item.source_id)
            return ()
        frame_hw = (item.height, item.width)
        input_hw = self._input_hw.get(frame_hw)
        if input_hw is None:
            input_hw = self._input_hw[frame_hw] = self._model.input_hw_for(frame_hw)
        return (
            prepare(item, self._model.spec, input_hw, self._reformatter, self._model.array_device),
        )
