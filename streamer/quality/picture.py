"""What a camera's picture looks like, measured on a small grey thumbnail.

Pure functions: `thumbnail` takes the luma of a decoded frame (no colour conversion: the
Y plane of a YUV frame already is the grey picture) and shrinks it; `measure` reduces a
thumbnail to the few numbers the health conditions judge; `Reference` is what a source's
picture looked like while it was known to be good. A 320x180 thumbnail costs well under a
millisecond to measure, so every camera can be watched a few times a second.

Every measure is chosen to move for one fault and to stay still for the others:
- brightness is the mean relative to the reference's, so a dim scene is no fault;
- texture per cell is the cell's deviation over the frame's mean brightness, so a
  darker picture keeps its texture, and a covered part loses it;
- sharpness per cell is the Laplacian's variance over the cell's own variance, so it
  does not fall with brightness or contrast, only with detail;
- structure is the gradient magnitude of a blurred 80x45 picture, compared by normalised
  correlation: insensitive to brightness and focus, sensitive to where edges are.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

THUMB_WIDTH = 320
GRID = (9, 16)  # rows x columns of cells the thumbnail is judged in
STRUCTURE_SIZE = (80, 45)  # width, height of the edge map a moved camera is judged by
TEXTURED_CV = 0.02  # a cell whose deviation is 2 % of the mean brightness has detail
FLAT_SHARE = 0.25  # a textured cell that keeps less than this of its texture is covered
CHANGED_LEVELS = 3  # a pixel that moved this many grey levels changed (a coder's noise: 1-2)
LUMA_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "nv12", "gray"})


def luma(picture: av.VideoFrame | np.ndarray, reformatter: VideoReformatter) -> np.ndarray:
    """The grey picture of a decoded frame (its Y plane, not copied) or of a BGR array;
    `reformatter`: the calling thread's own, for other pixel formats (a frame's own
    converter is not safe to share between threads)."""
    if isinstance(picture, np.ndarray):
        return np.asarray(cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY))
    if picture.format.name in LUMA_FORMATS:
        plane = picture.planes[0]
        rows = np.frombuffer(memoryview(plane), np.uint8)
        return rows.reshape(plane.height, plane.line_size)[:, : plane.width]
    return np.asarray(reformatter.reformat(picture, format="gray").to_ndarray())


def thumbnail(grey: np.ndarray) -> np.ndarray:
    """`grey` shrunk to THUMB_WIDTH wide (area averaging: sensor noise averages out)."""
    h, w = grey.shape
    size = (THUMB_WIDTH, max(GRID[0], round(h * THUMB_WIDTH / w)))
    return np.asarray(cv2.resize(grey, size, interpolation=cv2.INTER_AREA))


@dataclass(frozen=True)
class Measures:
    """One thumbnail's numbers."""

    brightness: float  # mean grey level, 0..255
    bright_level: float  # the 99th percentile: how bright the brightest parts are
    texture: np.ndarray  # per cell: standard deviation / mean brightness
    sharpness: np.ndarray  # per cell: Laplacian variance / variance (NaN where flat)
    structure: np.ndarray  # gradient magnitude map, STRUCTURE_SIZE


def _cells(image: np.ndarray) -> np.ndarray:
    """`image` cut into GRID cells: rows x cols x cell pixels (edges trimmed)."""
    rows, cols = GRID
    h, w = image.shape[0] // rows * rows, image.shape[1] // cols * cols
    cut = image[:h, :w].reshape(rows, h // rows, cols, w // cols).swapaxes(1, 2)
    return cut.reshape(rows, cols, -1)


def measure(thumb: np.ndarray) -> Measures:
    """The measures of one thumbnail (uint8 grey)."""
    image = thumb.astype(np.float32)
    brightness = float(image.mean())
    cells = _cells(image)
    variance = cells.var(axis=2)
    laplacian = _cells(cv2.Laplacian(image, cv2.CV_32F, ksize=3)).var(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpness = np.where(variance > 1.0, laplacian / variance, np.nan)
    small = cv2.resize(image, STRUCTURE_SIZE, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (3, 3), 0)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1)
    return Measures(
        brightness=brightness,
        bright_level=float(np.percentile(thumb, 99)),
        texture=np.sqrt(variance) / max(brightness, 1.0),
        sharpness=sharpness.astype(np.float32),
        structure=np.asarray(cv2.magnitude(gx, gy)),
    )


def changed_share(previous: np.ndarray, current: np.ndarray) -> float:
    """The share of a thumbnail's pixels that changed by CHANGED_LEVELS or more: a coder
    re-encoding a still picture moves pixels by 1 or 2 levels, never more."""
    return float((cv2.absdiff(previous, current) >= CHANGED_LEVELS).mean())


@dataclass(frozen=True)
class Reference:
    """A source's picture while it was good: medians over the baseline's thumbnails
    (people passing through move no median), and the mean edge map."""

    brightness: float
    texture: np.ndarray
    sharpness: np.ndarray
    structure: np.ndarray

    @classmethod
    def learn(cls, samples: list[Measures]) -> Reference:
        if not samples:
            raise ValueError("a reference needs at least one picture")
        with warnings.catch_warnings():
            # A cell flat in every picture (a wall, the sky) has no sharpness: NaN, as
            # in each measure, and `sharpness_ratio` leaves it out.
            warnings.simplefilter("ignore", RuntimeWarning)
            sharpness = np.nanmedian(np.stack([m.sharpness for m in samples]), axis=0)
        return cls(
            brightness=float(np.median([m.brightness for m in samples])),
            texture=np.median(np.stack([m.texture for m in samples]), axis=0),
            sharpness=sharpness.astype(np.float32),
            structure=np.mean(np.stack([m.structure for m in samples]), axis=0),
        )

    def brightness_ratio(self, m: Measures) -> float:
        return m.brightness / max(self.brightness, 1.0)

    def covered_share(self, m: Measures) -> float:
        """Of the cells with detail in the reference, the share that lost it."""
        textured = self.texture >= TEXTURED_CV
        if not textured.any():
            return 0.0
        lost = m.texture < FLAT_SHARE * self.texture
        return float((lost & textured).sum() / textured.sum())

    def sharpness_ratio(self, m: Measures) -> float:
        """The median, over cells with detail now and then, of sharpness now / then."""
        usable = (
            (self.texture >= TEXTURED_CV)
            & (m.texture >= FLAT_SHARE * self.texture)
            & np.isfinite(self.sharpness)
            & np.isfinite(m.sharpness)
            & (self.sharpness > 0)
        )
        if not usable.any():
            return 1.0
        return float(np.median(m.sharpness[usable] / self.sharpness[usable]))

    def structure_match(self, m: Measures) -> float:
        """Normalised correlation of the edge maps: 1 the same scene, ~0 another one."""
        a = self.structure - self.structure.mean()
        b = m.structure - m.structure.mean()
        norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
        return float((a * b).sum() / norm) if norm > 0 else 0.0
