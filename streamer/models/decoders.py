"""Pure decoders from raw model outputs (one image, no batch axis) to candidate boxes.

Each returns boxes in model-input pixels (x1, y1, x2, y2), their scores and class ids,
keeping only candidates whose score reaches `confidence`. NMS happens afterwards.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from streamer.analytics.boxes import cxcywh_to_xyxy

Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]

YOLOX_STRIDES = (8, 16, 32)


def decode_yolov8(output: np.ndarray, confidence: float) -> Candidates:
    """Ultralytics YOLOv8/YOLO11 detection output `[4 + nc, N]`.

    Rows 0..3 are cx, cy, w, h in input pixels; the other rows are per-class scores
    (already sigmoided, no objectness). The score of a box is its best class score.
    """
    scores_all = output[4:]
    # The best score of every box first (a fast row-wise max); the class only of the few
    # boxes that pass: an argmax down the columns of all of them costs 7x more.
    scores = scores_all.max(axis=0)
    keep = np.flatnonzero(scores >= confidence)
    class_ids = scores_all[:, keep].argmax(axis=0)
    boxes = np.ascontiguousarray(output[:4, keep].T)
    return cxcywh_to_xyxy(boxes), scores[keep], class_ids


@lru_cache(maxsize=8)
def yolox_grid(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets (N, 2) and strides (N, 1) for YOLOX's rows, strides 8, 16, 32 in order."""
    h, w = input_hw
    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        gy, gx = np.meshgrid(np.arange(h // stride), np.arange(w // stride), indexing="ij")
        grids.append(np.stack([gx, gy], axis=-1).reshape(-1, 2))
        strides.append(np.full((gx.size, 1), stride))
    return (
        np.concatenate(grids).astype(np.float32),
        np.concatenate(strides).astype(np.float32),
    )


def yolox_rows(input_hw: tuple[int, int]) -> int:
    """How many output rows YOLOX has for an input size."""
    h, w = input_hw
    return sum((h // s) * (w // s) for s in YOLOX_STRIDES)


def decode_yolox(output: np.ndarray, input_hw: tuple[int, int], confidence: float) -> Candidates:
    """YOLOX output `[N, 5 + nc]` with grid offsets not yet decoded.

    Row i belongs to a cell of one of the strides 8, 16, 32 (row-major within a level):
    `xy = (raw_xy + cell) * stride`, `wh = exp(raw_wh) * stride`. Column 4 is the
    objectness and columns 5.. the class probabilities, both already sigmoided;
    score = objectness x class probability.
    """
    # A score never exceeds its objectness: only rows whose objectness passes can pass.
    rows = np.flatnonzero(output[:, 4] >= confidence)
    class_probs = output[rows, 5:]
    class_ids = class_probs.argmax(axis=1)
    scores = output[rows, 4] * class_probs[np.arange(len(rows)), class_ids]
    passed = scores >= confidence
    keep = rows[passed]
    grid, strides = yolox_grid(input_hw)
    raw = output[keep, :4]
    xy = (raw[:, :2] + grid[keep]) * strides[keep]
    wh = np.exp(raw[:, 2:4]) * strides[keep]
    return cxcywh_to_xyxy(np.concatenate([xy, wh], axis=1)), scores[passed], class_ids[passed]
