"""Plane geometry for zones and lines, in source pixels (y down). Pure functions.

The direction rule of DESIGN.md section 6: for a line from A to B, the anchor moving from
the side where cross(B - A, P - A) < 0 to the side where it is > 0 crosses `in`.

>>> signed_distance_to_line((0, 400), (768, 400), (100, 410))  # below: the `in` side
10.0
>>> segments_intersect((100, 390), (100, 410), (0, 400), (768, 400))
True
>>> segments_intersect((800, 390), (800, 410), (0, 400), (768, 400))
False
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from streamer.events.event import Anchor

Point = tuple[float, float]


def anchor_point(box: Sequence[float], anchor: Anchor) -> Point:
    """The point of box (x1, y1, x2, y2) that zones and lines judge an object by."""
    x1, y1, x2, y2 = box
    x = (float(x1) + float(x2)) / 2
    if anchor is Anchor.BOTTOM_CENTER:
        return x, float(y2)
    if anchor is Anchor.TOP_CENTER:
        return x, float(y1)
    return x, (float(y1) + float(y2)) / 2


def _cross(o: Point, a: Point, b: Point) -> float:
    """cross(a - o, b - o): > 0 when b is on the `in` side of the line from o to a."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def signed_distance_to_line(a: Point, b: Point, p: Point) -> float:
    """Distance of `p` from the line through A and B, positive on the `in` side."""
    return _cross(a, b, p) / math.hypot(b[0] - a[0], b[1] - a[1])


def segments_intersect(p0: Point, p1: Point, a: Point, b: Point) -> bool:
    """Whether the path p0 -> p1 meets the segment A-B (touching counts)."""
    d1, d2 = _cross(a, b, p0), _cross(a, b, p1)
    d3, d4 = _cross(p0, p1, a), _cross(p0, p1, b)
    return d1 * d2 <= 0 and d3 * d4 <= 0


def polygon_contour(points: list[tuple[float, float]]) -> np.ndarray:
    return np.asarray(points, np.float32).reshape(-1, 1, 2)


def signed_distance_to_polygon(contour: np.ndarray, p: Point) -> float:
    """Distance of `p` from the polygon's edge: positive inside, negative outside.

    >>> square = polygon_contour([(0, 0), (100, 0), (100, 100), (0, 100)])
    >>> signed_distance_to_polygon(square, (50, 90)), signed_distance_to_polygon(square, (50, 130))
    (10.0, -30.0)
    """
    return float(cv2.pointPolygonTest(contour, (float(p[0]), float(p[1])), True))
