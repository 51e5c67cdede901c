"""Pure box math: letterbox geometry and its inverse, IoU, class-aware NMS.

Boxes are float arrays of shape (N, 4) holding x1, y1, x2, y2.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from streamer.runtime.messages import Letterbox


def dynamic_input_hw(src_hw: tuple[int, int], imgsz: int, stride: int) -> tuple[int, int]:
    """The input size Ultralytics' predictor picks for a model with a dynamic input.

    The frame is scaled so its long side is `imgsz`, and each side is padded only up to
    the next multiple of `stride`, not to a square: a 720x1280 frame at 640 gives 384x640.

    >>> dynamic_input_hw((720, 1280), 640, 32)
    (384, 640)
    """
    h, w = src_hw
    r = min(imgsz / h, imgsz / w)
    new_h, new_w = round(h * r), round(w * r)
    return new_h + (imgsz - new_h) % stride, new_w + (imgsz - new_w) % stride


def letterbox_geometry(
    src_hw: tuple[int, int], dst_hw: tuple[int, int], centered: bool
) -> Letterbox:
    """How to fit a frame of `src_hw` into `dst_hw` keeping its aspect ratio.

    The resized frame is `round(w * r) x round(h * r)` with `r = min(dst/src)`; it is
    placed in the centre (Ultralytics: the odd pixel of padding goes right and bottom)
    or at the top-left corner (YOLOX).

    >>> letterbox_geometry((720, 1280), (384, 640), centered=True)
    Letterbox(scale_x=0.5, scale_y=0.5, pad_x=0, pad_y=12)
    """
    h, w = src_hw
    dst_h, dst_w = dst_hw
    r = min(dst_h / h, dst_w / w)
    new_h, new_w = round(h * r), round(w * r)
    pad_x = round((dst_w - new_w) / 2 - 0.1) if centered else 0
    pad_y = round((dst_h - new_h) / 2 - 0.1) if centered else 0
    return Letterbox(scale_x=new_w / w, scale_y=new_h / h, pad_x=pad_x, pad_y=pad_y)


def unletterbox(xyxy: np.ndarray, lb: Letterbox, src_hw: tuple[int, int]) -> np.ndarray:
    """Map boxes from model-input pixels back to source pixels, clipped to the frame."""
    h, w = src_hw
    out = np.empty_like(xyxy, dtype=np.float32)
    out[:, [0, 2]] = np.clip((xyxy[:, [0, 2]] - lb.pad_x) / lb.scale_x, 0, w)
    out[:, [1, 3]] = np.clip((xyxy[:, [1, 3]] - lb.pad_y) / lb.scale_y, 0, h)
    return out


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with each of `boxes` (N, 4)."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4): (N, M).

    >>> iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10]]))
    array([[1.        , 0.33333333]])
    """
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_by_iou(
    a_xyxy: np.ndarray,
    a_classes: np.ndarray,
    b_xyxy: np.ndarray,
    b_classes: np.ndarray,
    min_iou: float | np.ndarray,
) -> list[tuple[int, int, float]]:
    """Optimal one-to-one pairs (row of `a`, row of `b`, their IoU) of the same class with
    IoU >= `min_iou` (one number, or one per pair: (N, M), inf where a pair may not be),
    chosen to maximise the total IoU of the pairs that may be.

    >>> a = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    >>> b = np.array([[1, 0, 11, 10], [20, 0, 30, 10]])
    >>> same = np.zeros(2, int)
    >>> match_by_iou(a, same, b, same, 0.5)
    [(0, 0, 0.8181818181818182), (1, 1, 1.0)]
    >>> match_by_iou(a, same, b, same, np.array([[0.5, 0.5], [0.5, np.inf]]))
    [(0, 0, 0.8181818181818182)]
    """
    if not len(a_xyxy) or not len(b_xyxy):
        return []
    iou = iou_matrix(a_xyxy, b_xyxy)
    iou[a_classes[:, None] != b_classes[None, :]] = 0.0
    allowed = iou >= min_iou
    rows, cols = linear_sum_assignment(-np.where(allowed, iou, 0.0))
    return [
        (int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols, strict=True) if allowed[r, c]
    ]


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_detections: int,
) -> np.ndarray:
    """Class-aware greedy non-maximum suppression; the indices kept, best first.

    Boxes of different classes never suppress each other: each class's boxes are
    shifted by an offset larger than any coordinate, so one pass handles all classes.

    >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], np.float32)
    >>> nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), 0.5, 100).tolist()
    [0, 2]
    """
    if len(xyxy) == 0:
        return np.empty((0,), np.int64)
    offset = 2 * float(np.abs(xyxy).max()) + 1.0  # wider than any box, even one below zero
    shifted = xyxy + (class_ids.astype(np.float64) * offset)[:, None]
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_detections:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou_one_to_many(shifted[best], shifted[rest]) <= iou_threshold]
    return np.asarray(keep, np.int64)
