"""Measures the exported demo detector with onnxruntime, the way the pipeline will run it.

Frames go through the Ultralytics-style letterbox (RGB, /255, centred padding of 114 up to a
multiple of 32), the ONNX output is decoded here with NumPy (confidence threshold, class-aware
NMS, boxes mapped back through the letterbox) and matched to ground truth at IoU >= 0.5.

    python -m tools.eval_demo_detector [--model models/demo-detector.onnx]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import cv2
import numpy as np
import onnxruntime as ort

from tools.scenes import CLASSES, Scene, render_frame

IMGSZ, STRIDE, PAD_VALUE = 320, 32, 114
CONF, NMS_IOU, MATCH_IOU = 0.35, 0.5, 0.5
HELD_OUT_SEED = 9_000_000  # random scenes from here on are never used for training


def letterbox_shape(h: int, w: int, imgsz: int = IMGSZ, stride: int = STRIDE) -> tuple[int, int]:
    """Input (height, width) for a frame: scaled to fit ``imgsz``, padded to a stride multiple."""
    r = min(imgsz / h, imgsz / w)
    nh, nw = round(h * r), round(w * r)
    return nh + (imgsz - nh) % stride, nw + (imgsz - nw) % stride


def letterbox(bgr: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, float, float, float]:
    """Ultralytics' LetterBox into ``shape``: RGB uint8 HxWx3, scale, left and top padding."""
    h, w = bgr.shape[:2]
    r = min(shape[0] / h, shape[1] / w)
    nw, nh = round(w * r), round(h * r)
    if (nw, nh) != (w, h):
        bgr = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    dw, dh = (shape[1] - nw) / 2, (shape[0] - nh) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    out = cv2.copyMakeBorder(
        bgr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB), r, left, top


def to_tensor(rgbs: list[np.ndarray]) -> np.ndarray:
    """Batch of letterboxed RGB images -> float32 (B, 3, H, W) in 0..1, the model's input."""
    return np.stack(rgbs).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    iou: np.ndarray = inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)
    return iou


def postprocess(
    out: np.ndarray,
    r: float,
    left: float,
    top: float,
    frame_hw: tuple[int, int],
    conf: float = CONF,
    iou: float = NMS_IOU,
) -> np.ndarray:
    """One image's output (4 + nc, N) -> detections (K, 6): x1, y1, x2, y2, score, class."""
    scores = out[4:].T
    cls = scores.argmax(1)
    best = scores[np.arange(len(cls)), cls]
    keep = best >= conf
    xywh, cls, best = out[:4, keep].T, cls[keep], best[keep]
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    kept: list[int] = []
    for c in np.unique(cls):  # class-aware NMS: a person may stand in front of a car
        idx = np.flatnonzero(cls == c)
        idx = idx[np.argsort(-best[idx])]
        while idx.size:
            kept.append(int(idx[0]))
            idx = idx[1:][box_iou(boxes[idx[:1]], boxes[idx[1:]])[0] < iou]
    boxes = (boxes[kept] - [left, top, left, top]) / r
    boxes = np.clip(boxes, 0, [frame_hw[1], frame_hw[0]] * 2)
    return np.concatenate([boxes, best[kept, None], cls[kept, None]], 1)


class Counts:
    """True/false positives and misses per class, matched greedily by score at MATCH_IOU."""

    def __init__(self) -> None:
        self.tp, self.fp, self.fn = (np.zeros(len(CLASSES), int) for _ in range(3))

    def add(self, dets: np.ndarray, gt_boxes: np.ndarray, gt_cls: np.ndarray) -> None:
        for c in range(len(CLASSES)):
            d = dets[dets[:, 5] == c]
            d = d[np.argsort(-d[:, 4])]
            g = gt_boxes[gt_cls == c]
            free = np.ones(len(g), bool)
            ious = box_iou(d[:, :4], g) if len(g) else np.zeros((len(d), 0))
            for row in ious:
                j = int(np.argmax(np.where(free, row, -1))) if free.any() else -1
                if j >= 0 and row[j] >= MATCH_IOU:
                    free[j] = False
                    self.tp[c] += 1
                else:
                    self.fp[c] += 1
            self.fn[c] += int(free.sum())

    def report(self, title: str) -> dict[str, dict[str, float]]:
        figures = {}
        print(title)
        for c, name in enumerate(CLASSES):
            p = self.tp[c] / max(self.tp[c] + self.fp[c], 1)
            r = self.tp[c] / max(self.tp[c] + self.fn[c], 1)
            figures[name] = {"precision": round(float(p), 4), "recall": round(float(r), 4)}
            print(
                f"  {name:7s} precision {p:.3f}  recall {r:.3f}  "
                f"(tp {self.tp[c]}, fp {self.fp[c]}, fn {self.fn[c]})"
            )
        return figures


def _run(
    session: ort.InferenceSession,
    frames: list[np.ndarray],
    truths: list[tuple[np.ndarray, np.ndarray]],
    counts: Counts,
    batch: int = 16,
) -> None:
    for i in range(0, len(frames), batch):
        chunk = frames[i : i + batch]
        boxed = [letterbox(f, letterbox_shape(*f.shape[:2])) for f in chunk]
        outs = session.run(["output0"], {"images": to_tensor([b[0] for b in boxed])})[0]
        for out, (_, r, left, top), frame, truth in zip(
            outs, boxed, chunk, truths[i : i + batch], strict=True
        ):
            counts.add(postprocess(out, r, left, top, frame.shape[:2]), *truth)


def _truth(boxes: list[tuple[int, tuple[float, ...]]]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([b for _, b in boxes], float).reshape(-1, 4),
        np.array([c for c, _ in boxes], int),
    )


def evaluate_clip(
    session: ort.InferenceSession, video: Path, truth: Path
) -> dict[str, dict[str, float]]:
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    boxes = json.loads(truth.read_text())["boxes"]
    truths = [
        _truth([(b["class_id"], tuple(b["xyxy"])) for b in boxes[str(i)]])
        for i in range(len(frames))
    ]
    counts = Counts()
    _run(session, frames, truths, counts)
    return counts.report(f"{video} ({len(frames)} frames)")


def evaluate_scenes(session: ort.InferenceSession, n: int) -> dict[str, dict[str, float]]:
    frames, truths = [], []
    for k in range(n):
        scene = Scene.random(HELD_OUT_SEED + k)
        frame, boxes = render_frame(scene, scene.duration_s * (k % 10) / 10)
        frames.append(frame)
        truths.append(_truth([(b.class_id, b.xyxy) for b in boxes]))
    counts = Counts()
    _run(session, frames, truths, counts)
    return counts.report(f"held-out random scenes ({n} frames, 640x360)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo-detector.onnx"))
    parser.add_argument("--video", type=Path, default=Path("sample_videos/parking.mp4"))
    parser.add_argument("--truth", type=Path, default=Path("sample_videos/parking.json"))
    parser.add_argument("--scenes", type=int, default=300, help="held-out random scenes")
    args = parser.parse_args()
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    evaluate_scenes(session, args.scenes)
    evaluate_clip(session, args.video, args.truth)


if __name__ == "__main__":
    main()
