"""Drawing a frame's boxes, track ids, zones and lines onto the picture: pure functions
over a BGR array, with OpenCV's primitives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from streamer.config.schema import PipelineConfig
from streamer.runtime.messages import Detections

# Distinct, bright colours (BGR) for classes; a class keeps its colour in every frame.
PALETTE = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
    (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
    (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255),
)  # fmt: skip
ZONE_COLOUR = (0, 200, 255)
LINE_COLOUR = (255, 0, 255)
TEXT_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
DIM = 0.35  # a frame of a source that is down is shown this bright
BLANK_HW = (360, 640)  # the picture of a source that never sent a frame


@dataclass(frozen=True)
class Regions:
    """The zones and lines drawn on one source's frames, in its pixels."""

    zones: Sequence[tuple[str, Sequence[tuple[float, float]]]] = ()
    lines: Sequence[tuple[str, tuple[float, float], tuple[float, float]]] = ()


def regions_by_source(config: PipelineConfig) -> dict[str, Regions]:
    """Each source's zones and lines, as its events use them."""

    def on(sources: list[str] | None, source_id: str) -> bool:
        return sources is None or source_id in sources

    return {
        s.id: Regions(
            zones=[(z.name, z.polygon) for z in config.zones if on(z.sources, s.id)],
            lines=[(ln.name, *ln.points) for ln in config.lines if on(ln.sources, s.id)],
        )
        for s in config.sources
    }


def _scale(image: np.ndarray) -> float:
    """Line and text size for this picture: the same look at 480p and at 4K."""
    return max(0.8, min(int(image.shape[0]), int(image.shape[1])) / 540)


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """`text` on a filled box of `colour`, its bottom-left at (x, y), kept in the picture."""
    s = _scale(image)
    thickness = max(1, round(s * 1.5))
    (w, h), base = cv2.getTextSize(text, FONT, 0.5 * s, thickness)
    x = min(max(0, x), max(0, image.shape[1] - w - 2))
    y = max(h + base + 2, y)
    cv2.rectangle(image, (x, y - h - base - 2), (x + w + 2, y), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 1, y - base), FONT, 0.5 * s, TEXT_COLOUR, thickness, cv2.LINE_AA)


def draw_regions(image: np.ndarray, regions: Regions) -> None:
    """Zones as outlined polygons, lines as segments, each with its name; in place."""
    thickness = max(1, round(2 * _scale(image)))
    for name, polygon in regions.zones:
        pts = np.round(np.asarray(polygon, dtype=np.float32)).astype(np.int32)
        cv2.polylines(image, [pts], True, ZONE_COLOUR, thickness, cv2.LINE_AA)
        _label(image, name, int(pts[:, 0].min()), int(pts[:, 1].min()), ZONE_COLOUR)
    for name, a, b in regions.lines:
        pa, pb = (round(a[0]), round(a[1])), (round(b[0]), round(b[1]))
        cv2.line(image, pa, pb, LINE_COLOUR, thickness, cv2.LINE_AA)
        _label(image, name, min(pa[0], pb[0]), min(pa[1], pb[1]), LINE_COLOUR)


def draw_detections(
    image: np.ndarray,
    boxes: Detections,
    track_ids: Sequence[int | None],
    labels: Sequence[str],
) -> None:
    """Each box in its class's colour, labelled "label confidence #track"; in place."""
    thickness = max(1, round(2 * _scale(image)))
    for (x1, y1, x2, y2), confidence, class_id, track_id in zip(
        boxes.xyxy, boxes.confidence, boxes.class_id, track_ids, strict=True
    ):
        colour = PALETTE[int(class_id) % len(PALETTE)]
        p1, p2 = (round(float(x1)), round(float(y1))), (round(float(x2)), round(float(y2)))
        cv2.rectangle(image, p1, p2, colour, thickness, cv2.LINE_AA)
        label = labels[class_id] if 0 <= class_id < len(labels) else str(int(class_id))
        text = f"{label} {float(confidence):.2f}" + ("" if track_id is None else f" #{track_id}")
        _label(image, text, p1[0], p1[1], colour)


def draw_notice(image: np.ndarray, text: str) -> np.ndarray:
    """The picture dimmed, with `text` across its middle: a source that is down."""
    dimmed = cv2.convertScaleAbs(image, alpha=DIM)
    s = _scale(dimmed)
    thickness = max(1, round(2 * s))
    (w, h), _ = cv2.getTextSize(text, FONT, 0.8 * s, thickness)
    x = max(4, (dimmed.shape[1] - w) // 2)
    y = (dimmed.shape[0] + h) // 2
    cv2.putText(dimmed, text, (x, y), FONT, 0.8 * s, TEXT_COLOUR, thickness, cv2.LINE_AA)
    return dimmed


def blank(height: int = BLANK_HW[0], width: int = BLANK_HW[1]) -> np.ndarray:
    return np.full((height, width, 3), 48, dtype=np.uint8)
