"""Fit a frame into the model input: letterbox, channel order, scale, CHW float32."""

from __future__ import annotations

import time
from collections.abc import Iterable

import cv2
import numpy as np

from streamer.boxes import letterbox_geometry
from streamer.deadlines import WorkEstimate, is_expired
from streamer.messages import DropReason, Frame, Letterbox, Prepared
from streamer.models import Model, ModelSpec
from streamer.runtime import Stage
from streamer.stats import RunStats

PAD_VALUE = 114  # the grey both Ultralytics and YOLOX pad with


def letterbox_image(
    image: np.ndarray, dst_hw: tuple[int, int], lb: Letterbox, pad_value: int = PAD_VALUE
) -> np.ndarray:
    """`image` resized by `lb` and padded to `dst_hw` (H x W x 3 uint8)."""
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


def prepare(frame: Frame, spec: ModelSpec, input_hw: tuple[int, int]) -> Prepared:
    lb = letterbox_geometry((frame.height, frame.width), input_hw, spec.centered)
    boxed = letterbox_image(frame.image, input_hw, lb)
    return Prepared(frame=frame, tensor=to_tensor(boxed, spec.rgb, spec.scale), letterbox=lb)


class PreprocessStage(Stage[Frame, Prepared]):
    """Letterboxes each frame to the model input, unless it can no longer make its deadline."""

    name = "preprocess"

    def __init__(self, model: Model, estimate: WorkEstimate, stats: RunStats) -> None:
        self._model = model
        self._estimate = estimate
        self._stats = stats
        self._input_hw: dict[tuple[int, int], tuple[int, int]] = {}

    def process(self, item: Frame) -> Iterable[Prepared]:
        if is_expired(item.deadline_ns, time.monotonic_ns(), self._estimate.reserve_ns()):
            self._stats.frame_dropped(self.name, DropReason.DEADLINE.value)
            return ()
        frame_hw = (item.height, item.width)
        input_hw = self._input_hw.get(frame_hw)
        if input_hw is None:
            input_hw = self._input_hw[frame_hw] = self._model.input_hw_for(frame_hw)
        return (prepare(item, self._model.spec, input_hw),)
