"""Motion detection on a small grey picture, and the gate that runs the model only where
something moved.

Modelled on Frigate's motion detector: a running average of the picture is the background,
pixels that differ from it by more than a threshold moved, and a moving region must be
large enough to count. Masked parts of the picture (a clock, a tree, the camera's
timestamp overlay) are never motion. A change over most of the picture at once is light
(clouds, a lamp switched on, the camera's day/night switch), not motion: the background
is set to the new picture and the frame is detected anyway, since something may have
moved in it too.

The background forgets on the source's own clock, `background_s` being the time
constant, so a dropped frame or a camera at 5 fps does not change what counts as still.
Written here rather than taken from a library: OpenCV's MOG2/KNN subtractors model
every pixel's distribution (several times the cost) and adapt per frame, not per second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer.config.schema import MotionConfig
from streamer.quality.picture import luma

MOTION_WIDTH = 320  # a 720p frame shrinks 4x: a person 40 px tall is still 10 px here
LIGHT_SHARE = 0.6  # more of the picture than this changing at once is light, not motion

Polygon = Sequence[tuple[float, float]]


@dataclass(frozen=True)
class MotionSettings:
    """What counts as motion (the pipeline's `motion:` section)."""

    threshold: int = 20
    """Grey levels (0-255) a pixel must differ from the background by."""
    min_area: float = 0.0005
    """Share of the picture a moving region must cover (0.0005: 460 pixels of a 720p
    frame, a person 40 px tall)."""
    background_s: float = 2.0
    """Time constant of the background: a change it has held this long is 63 % absorbed."""
    detect_every_s: float = 2.0
    """The model runs at least this often on a still picture, to keep objects that do not
    move (a parked car, a person standing) seen."""
    masks: tuple[tuple[tuple[float, float], ...], ...] = field(default=())
    """Polygons in source pixels where motion is ignored."""

    @classmethod
    def from_config(cls, motion: MotionConfig) -> MotionSettings:
        return cls(
            threshold=motion.threshold,
            min_area=motion.min_area,
            background_s=motion.background_s,
            detect_every_s=motion.detect_every_s,
            masks=tuple(tuple(polygon) for polygon in motion.masks),
        )


@dataclass(frozen=True)
class Motion:
    """What one picture showed."""

    moved: bool
    share: float  # of the unmasked picture that differs from the background
    light: bool  # most of the picture changed at once: the background was reset


def shrunk(grey: np.ndarray) -> np.ndarray:
    """`grey` at MOTION_WIDTH wide: every n-th pixel down to twice that, then averaged
    over 2x2 (sensor noise averages out; 0.2 ms a 720p frame against 0.75 averaging all)."""
    h, w = grey.shape
    step = max(1, w // (2 * MOTION_WIDTH))
    size = (MOTION_WIDTH, max(1, round(h * MOTION_WIDTH / w)))
    return np.asarray(cv2.resize(grey[::step, ::step], size, interpolation=cv2.INTER_AREA))


def mask_image(
    masks: Sequence[Polygon], frame_hw: tuple[int, int], small_hw: tuple[int, int]
) -> np.ndarray:
    """A uint8 image of `small_hw`: 0 inside any of `masks` (source pixels), 255 elsewhere."""
    mask = np.full(small_hw, 255, np.uint8)
    sy, sx = small_hw[0] / frame_hw[0], small_hw[1] / frame_hw[1]
    for polygon in masks:
        points = np.array([[x * sx, y * sy] for x, y in polygon], np.float64)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 0)
    return mask


def moving_regions(difference: np.ndarray, threshold: int, min_pixels: int) -> list[int]:
    """Areas (pixels) of the connected regions of `difference` above `threshold` that are
    at least `min_pixels` large; neighbouring specks are joined first (a person's moving
    parts are not one blob at this size)."""
    moving = cv2.threshold(difference, threshold, 255, cv2.THRESH_BINARY)[1]
    moving = cv2.dilate(moving, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    areas = stats[1:count, cv2.CC_STAT_AREA]
    return [int(a) for a in areas if a >= min_pixels]


class MotionDetector:
    """Running-average background of one source; `observe` each picture in time order."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._background: np.ndarray | None = None  # float32, MOTION_WIDTH wide
        self._last_s = 0.0
        self._frame_hw: tuple[int, int] | None = None
        self._mask: np.ndarray | None = None  # None: nothing masked
        self._visible = 0  # pixels of the small picture outside the masks

    def observe(self, grey: np.ndarray, t_s: float) -> Motion:
        """`grey`: the picture's luma at full size; `t_s`: its time on the source's clock."""
        small = shrunk(grey)
        if grey.shape != self._frame_hw or self._background is None:
            self._reset(grey.shape, small, t_s)
            return Motion(moved=True, share=1.0, light=False)
        background = self._background
        difference = cv2.absdiff(small, background.astype(np.uint8))
        if self._mask is not None:
            difference = cv2.bitwise_and(difference, self._mask)
        visible = self._visible
        share = int(np.count_nonzero(difference > self.settings.threshold)) / max(visible, 1)
        if share > LIGHT_SHARE:
            self._reset(grey.shape, small, t_s)
            return Motion(moved=True, share=share, light=True)
        min_pixels = max(1, round(self.settings.min_area * visible))
        # Too few changed pixels for any region to be large enough: no need to find them.
        moved = share * visible >= min_pixels and bool(
            moving_regions(difference, self.settings.threshold, min_pixels)
        )
        step = max(0.0, t_s - self._last_s)
        alpha = 1.0 - math.exp(-step / self.settings.background_s)
        cv2.accumulateWeighted(small, background, alpha)
        self._last_s = t_s
        return Motion(moved=moved, share=share, light=False)

    def _reset(self, frame_hw: tuple[int, ...], small: np.ndarray, t_s: float) -> None:
        self._background = small.astype(np.float32)
        self._last_s = t_s
        hw = (int(frame_hw[0]), int(frame_hw[1]))
        if hw != self._frame_hw:
            self._frame_hw = hw
            masks = self.settings.masks
            self._mask = mask_image(masks, hw, small.shape[:2]) if masks else None
            self._visible = int(small.size if self._mask is None else np.count_nonzero(self._mask))


class MotionGate:
    """Decides, per frame of one source, whether the model runs on it: when something
    moved, and at least every `detect_every_s` of the source's time."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._detector = MotionDetector(settings)
        self._reformatter = VideoReformatter()  # this source thread's own
        self._detected_s: float | None = None

    def wants_model(self, picture: av.VideoFrame | np.ndarray, t_s: float) -> bool:
        motion = self._detector.observe(luma(picture, self._reformatter), t_s)
        last = self._detected_s
        # Due when detect_every_s has passed, or when the clock went back (a file looped,
        # a camera's clock was reset).
        due = last is None or not last <= t_s < last + self.settings.detect_every_s
        if motion.moved or due:
            self._detected_s = t_s
            return True
        return False
