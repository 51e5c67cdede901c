"""Frames prepared for the model on the device that holds them, a batch at a time.

A picture is taken as its 4:2:0 planes (DLPack views of the decoder's own memory: no
copy, no conversion on the CPU), and a whole batch is letterboxed, converted to RGB or
BGR and scaled into the model's input buffer with a few array operations per batch, not
per frame (on a GPU each is one kernel; Python's cost per frame is a few microseconds).
The code is written against an array module: CuPy on a GPU, NumPy in the tests, where
it is checked against the CPU path on the same frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import av
import numpy as np

from streamer.device.resize import FULL_RANGE, resize_weights, yuv_to_rgb
from streamer.models.families import PAD_VALUE, ModelSpec
from streamer.runtime.messages import Letterbox

# The decoders' 8-bit 4:2:0 layouts: NVDEC's (two planes) and the software decoders'.
PLANAR_FORMATS = frozenset({"yuv420p", "yuvj420p"})
DEVICE_FORMATS = PLANAR_FORMATS | {"nv12"}


@dataclass(frozen=True)
class Planes:
    """One 4:2:0 picture: luma (H x W) and the two chroma planes (H/2 x W/2), arrays of
    the module that holds them (views of the decoded frame, which they keep alive)."""

    y: Any
    u: Any
    v: Any
    colorspace: int  # FFmpeg's AVColorSpace of the picture
    color_range: int  # FFmpeg's AVColorRange

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.y.shape[0]), int(self.y.shape[1])


def blank_planes(xp: ModuleType, hw: tuple[int, int]) -> Planes:
    """A black picture of `hw` on `xp`'s device (warm-ups)."""
    h, w = hw
    chroma = xp.full((h // 2, w // 2), 128, xp.uint8)
    return Planes(xp.full((h, w), 16, xp.uint8), chroma, chroma, 1, 1)


def pixel_format(picture: av.VideoFrame) -> str:
    """The layout of a picture's data: a hardware frame's underlying format."""
    return str((picture.sw_format or picture.format).name)


def planes_of(picture: av.VideoFrame, xp: ModuleType) -> Planes | None:
    """The planes of a decoded picture, without a copy: arrays of `xp` (the GPU's module)
    for a frame the hardware decoder kept on the device, NumPy arrays for one in system
    memory (copied to the device with its batch); None for a layout this path does not
    read (10-bit, 4:4:4...)."""
    name = pixel_format(picture)
    if name not in DEVICE_FORMATS or picture.width % 2 or picture.height % 2:
        return None
    if picture.sw_format is None:  # in system memory
        exported = [np.from_dlpack(plane) for plane in picture.planes]
    else:
        # The capsule itself: CuPy's from_dlpack hands PyAV its CUDA stream to synchronise
        # with, which PyAV refuses. FFmpeg copies the decoded picture into the frame on the
        # device's legacy default stream, which CuPy's default stream is ordered after.
        exported = [xp.from_dlpack(plane.__dlpack__()) for plane in picture.planes]
    if name == "nv12":
        y, uv = exported
        u, v = uv[..., 0], uv[..., 1]
    else:
        y, u, v = exported
    color_range = FULL_RANGE if name == "yuvj420p" else int(picture.color_range)
    return Planes(y, u, v, int(picture.colorspace), color_range)


class BatchPreparer:
    """Letterboxes batches of pictures into a model input buffer with one array module,
    keeping that module's copy of each resize matrix."""

    def __init__(self, xp: ModuleType) -> None:
        self.xp = xp
        self._weights: dict[tuple[int, int], Any] = {}

    def _resize(self, planes: Any, dst_hw: tuple[int, int]) -> Any:
        """A (B, h, w) stack resized to (B, *dst_hw), as float32."""
        src_h, src_w = planes.shape[1:]
        rows = self._matrix(src_h, dst_hw[0])
        columns = self._matrix(src_w, dst_hw[1]).T
        return rows @ planes.astype(self.xp.float32) @ columns

    def _matrix(self, src: int, dst: int) -> Any:
        matrix = self._weights.get((src, dst))
        if matrix is None:
            matrix = self._weights[(src, dst)] = self.xp.asarray(resize_weights(src, dst))
        return matrix

    def into(
        self,
        out: Any,
        pictures: Sequence[Planes | np.ndarray],
        letterboxes: Sequence[Letterbox],
        spec: ModelSpec,
    ) -> None:
        """Fill `out[:len(pictures)]` (slots of 3 x H x W, the model's dtype) with the
        pictures letterboxed, in the model's channel order and scale. A picture may also
        come as a tensor prepared on the CPU, which is only copied into its slot."""
        xp = self.xp
        n = len(pictures)
        out[:n] = PAD_VALUE * spec.scale
        groups: dict[tuple[Any, ...], list[int]] = {}
        for slot, (picture, lb) in enumerate(zip(pictures, letterboxes, strict=True)):
            if isinstance(picture, np.ndarray):
                out[slot] = xp.asarray(picture)
                continue
            key = (picture.hw, picture.colorspace, picture.color_range, lb)
            groups.setdefault(key, []).append(slot)
        for (hw, colorspace, color_range, lb), slots in groups.items():
            planes = [p for p in (pictures[slot] for slot in slots) if isinstance(p, Planes)]
            new_hw = (round(hw[0] * lb.scale_y), round(hw[1] * lb.scale_x))
            luma = self._resize(xp.stack([xp.asarray(p.y) for p in planes]), new_hw)
            u = self._resize(xp.stack([xp.asarray(p.u) for p in planes]), new_hw) - 128.0
            v = self._resize(xp.stack([xp.asarray(p.v) for p in planes]), new_hw) - 128.0
            m = yuv_to_rgb(colorspace, color_range)
            grey = (luma - m.y_offset) * m.gain
            red, green, blue = grey + m.r_v * v, grey + m.g_u * u + m.g_v * v, grey + m.b_u * u
            top, left = lb.pad_y, lb.pad_x
            bottom, right = top + new_hw[0], left + new_hw[1]
            contiguous = slots == list(range(slots[0], slots[-1] + 1))
            index = slice(slots[0], slots[-1] + 1) if contiguous else xp.asarray(slots)
            for channel, plane in enumerate((red, green, blue) if spec.rgb else (blue, green, red)):
                # Rounded to 8 bits as the CPU path's swscale output is, then scaled.
                value = xp.clip(xp.rint(plane), 0.0, 255.0) * spec.scale
                out[index, channel, top:bottom, left:right] = value
