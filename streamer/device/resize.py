"""Pure math of preparing frames on a GPU: resize filters as matrices, YUV to RGB.

A letterbox resize is two matrix products (rows, then columns) with weights made once
per frame size, so that one batched product per plane runs the resize of a whole batch
on the GPU (cuBLAS) and the same code runs on NumPy, where the tests check it against
the CPU path. The filter is FFmpeg swscale's BILINEAR, which the CPU path uses: a
triangle as wide as one source pixel when enlarging and as wide as the scale when
shrinking (every source pixel counts, no aliasing).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# FFmpeg's AVColorSpace values that mean BT.709; every other value (unspecified
# included) is converted as BT.601, as swscale does.
BT709_COLORSPACES = frozenset({1})
# AVColorRange: 2 is full range ("JPEG"); unspecified and 1 are limited (video) range.
FULL_RANGE = 2


@functools.lru_cache(maxsize=64)
def resize_weights(src: int, dst: int) -> np.ndarray:
    """A (dst, src) float32 matrix whose row i holds the weights of the source pixels that
    make output pixel i, each row summing to 1.

    >>> resize_weights(4, 2).round(3)
    array([[0.429, 0.429, 0.143, 0.   ],
           [0.   , 0.143, 0.429, 0.429]], dtype=float32)
    >>> resize_weights(3, 3)
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    scale = src / dst
    support = max(1.0, scale)  # the triangle's half width, in source pixels
    centres = (np.arange(dst) + 0.5) * scale - 0.5
    distance = np.abs(np.arange(src)[None, :] - centres[:, None]) / support
    weights = np.clip(1.0 - distance, 0.0, None)
    # Near the edges part of the triangle falls outside the picture: the pixels inside
    # share its weight (as if the edge pixel were repeated).
    weights /= weights.sum(axis=1, keepdims=True)
    matrix = weights.astype(np.float32)
    matrix.setflags(write=False)  # shared by every caller through the cache
    return matrix


@dataclass(frozen=True)
class YuvToRgb:
    """RGB = gain * (Y - y_offset) + the chroma terms, each chroma value less 128."""

    gain: float
    r_v: float
    g_u: float
    g_v: float
    b_u: float
    y_offset: float


@functools.cache
def yuv_to_rgb(colorspace: int, color_range: int) -> YuvToRgb:
    """The conversion of a frame with FFmpeg's `colorspace` and `color_range` values.

    >>> m = yuv_to_rgb(1, 1)  # BT.709, limited range
    >>> round(m.gain, 4), round(m.r_v, 4), round(m.b_u, 4)
    (1.1644, 1.7927, 2.1124)
    """
    kr, kb = (0.2126, 0.0722) if colorspace in BT709_COLORSPACES else (0.299, 0.114)
    kg = 1.0 - kr - kb
    full = color_range == FULL_RANGE
    gain = 1.0 if full else 255.0 / 219.0
    chroma = 1.0 if full else 255.0 / 224.0
    return YuvToRgb(
        gain=gain,
        r_v=2.0 * (1.0 - kr) * chroma,
        g_u=-2.0 * kb * (1.0 - kb) / kg * chroma,
        g_v=-2.0 * kr * (1.0 - kr) / kg * chroma,
        b_u=2.0 * (1.0 - kb) * chroma,
        y_offset=0.0 if full else 16.0,
    )
