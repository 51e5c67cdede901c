"""Trains the tiny demo detector on rendered scenes and exports ``models/demo-detector.onnx``.

The network is a small anchor-free detector (conv backbone, FPN-lite, heads at strides 8/16/32)
written in plain PyTorch. The export matches an Ultralytics YOLOv8 detection export: input
``images`` (RGB, 0..1, letterboxed), output ``output0`` of shape (batch, 4 + nc, anchors) with
centre-x, centre-y, width, height in input pixels and sigmoid class scores, no NMS.

    pip install -r tools/requirements-train.txt
    python -m tools.train_demo_detector            # about 12 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tools.eval_demo_detector import evaluate_clip, evaluate_scenes, letterbox
from tools.scenes import CLASSES, Scene, render_frame

STRIDES = (8, 16, 32)
TRAIN_SHAPE = (192, 320)  # what a 16:9 frame letterboxes to at imgsz 320
TRAIN_SEED = 1_000_000  # training scenes; the clip uses seed 7, evaluation 9_000_000 onwards
MAX_BOXES = 24
BOX_GAIN = 5.0  # box loss weight relative to the class loss
EMA_DECAY = 0.998
VERSION = "1.0.0"


# --------------------------------------------------------------------------------------------
# Data: random scenes, degraded like a decoded camera stream, letterboxed like at inference.


def make_sample(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Training sample ``k``: RGB uint8 (H, W, 3) in TRAIN_SHAPE and (MAX_BOXES, 5) targets."""
    rng = np.random.default_rng([TRAIN_SEED, k])
    # Varied frame sizes and aspect ratios give varied padding and resampling.
    w = int(rng.uniform(400, 800))
    h = int(w / rng.uniform(1.3, 2.0))
    scene = Scene.random(TRAIN_SEED + k, w, h)
    img, boxes = render_frame(scene, float(rng.uniform(0, scene.duration_s)))
    # Exposure and white balance, as one lookup table per channel.
    gain = rng.uniform(0.6, 1.3) * rng.uniform(0.9, 1.1, 3)
    lut = np.clip(np.arange(256)[:, None] * gain + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
    img = cv2.LUT(img, lut[None])
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.85:  # block artefacts and chroma loss, like the H.264 clip
        jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 90))])[1]
        img = np.asarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))
    rgb, r, left, top = letterbox(img, TRAIN_SHAPE)
    if rng.random() < 0.5:  # sensor noise
        noise = rng.standard_normal(rgb.shape, dtype=np.float32) * rng.uniform(1, 8)
        rgb = np.clip(rgb + noise, 0, 255).astype(np.uint8)
    targets = np.full((MAX_BOXES, 5), -1, np.float32)
    for j, b in enumerate(boxes[:MAX_BOXES]):
        targets[j] = (b.class_id, *(np.array(b.xyxy) * r + [left, top, left, top]))
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
        valid = targets[:, 0] >= 0
        targets[valid, 1], targets[valid, 3] = (
            TRAIN_SHAPE[1] - targets[valid, 3],
            TRAIN_SHAPE[1] - targets[valid, 1],
        )
    return np.ascontiguousarray(rgb), targets


class RenderedScenes(torch.utils.data.Dataset[tuple[Tensor, Tensor]]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        rgb, targets = make_sample(k)
        return torch.from_numpy(rgb).permute(2, 0, 1), torch.from_numpy(targets)


# --------------------------------------------------------------------------------------------
# Model.


def grid(h: int, w: int, stride: int) -> Tensor:
    """Anchor points (h * w, 2): the x, y centres of a level's cells, row by row."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), -1).reshape(-1, 2)


def conv(c1: int, c2: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c1, c2, k, s, k // 2, bias=False), nn.BatchNorm2d(c2), nn.SiLU())


def head(c: int, nc: int) -> nn.Sequential:
    """One level's head: a 3x3 conv, then l, t, r, b distances and class logits per cell."""
    hidden, pred = conv(c, c), nn.Conv2d(c, 4 + nc, 1)
    assert pred.bias is not None
    # Start at 1 % class probability so the many background cells don't swamp the first steps
    # (the focal-loss prior).
    nn.init.constant_(pred.bias[4:], -math.log(99))
    return nn.Sequential(hidden, pred)


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(c, c), conv(c, c))

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.body(x)
        return x + y


class TinyDetector(nn.Module):
    """Backbone to stride 32, top-down FPN to strides 8/16/32, one small head per level.

    ``forward`` returns decoded boxes (B, 4, N) as cx, cy, w, h in input pixels and class
    logits (B, nc, N); :class:`Exported` adds the sigmoid and the Ultralytics layout.
    """

    def __init__(
        self, nc: int = len(CLASSES), widths: tuple[int, ...] = (16, 24, 48, 64, 80), neck: int = 48
    ) -> None:
        super().__init__()
        w = widths
        self.stem = nn.Sequential(conv(3, w[0], 3, 2), conv(w[0], w[1], 3, 2))
        self.stages = nn.ModuleList(
            nn.Sequential(conv(w[i], w[i + 1], 3, 2), Residual(w[i + 1])) for i in range(1, 4)
        )
        self.lateral = nn.ModuleList(conv(c, neck, 1) for c in w[2:])
        self.heads = nn.ModuleList(head(neck, nc) for _ in STRIDES)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        p = self.lateral[2](feats[2])
        levels = [p]
        for i in (1, 0):
            p = self.lateral[i](feats[i]) + F.interpolate(p, scale_factor=2.0, mode="nearest")
            levels.insert(0, p)
        boxes, logits = [], []
        for level, level_head, s in zip(levels, self.heads, STRIDES, strict=True):
            out = level_head(level)
            # Grid built from the runtime shape, so the export works at any multiple of 32.
            anchor = grid(out.shape[2], out.shape[3], s).T[None]
            out = out.flatten(2)
            ltrb = F.softplus(out[:, :4]) * s  # distances from the anchor to the box sides
            lt, rb = anchor - ltrb[:, :2], anchor + ltrb[:, 2:]
            boxes.append(torch.cat(((lt + rb) / 2, rb - lt), 1))
            logits.append(out[:, 4:])
        return torch.cat(boxes, 2), torch.cat(logits, 2)


class Exported(nn.Module):
    def __init__(self, model: TinyDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        boxes, logits = self.model(images)
        return torch.cat((boxes, logits.sigmoid()), 1)


# --------------------------------------------------------------------------------------------
# Loss: task-aligned assignment (as in YOLOv8/TOOD, simplified) with BCE and GIoU.


def xywh2xyxy(b: Tensor) -> Tensor:
    return torch.cat((b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2), -1)


def giou(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Elementwise (IoU, GIoU) of broadcastable xyxy boxes."""
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = (a[..., 2:] - a[..., :2]).prod(-1) + (b[..., 2:] - b[..., :2]).prod(-1) - inter
    iou = inter / (union + 1e-7)
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).prod(-1)
    return iou, iou - (hull - union) / (hull + 1e-7)


def detection_loss(
    boxes: Tensor, logits: Tensor, targets: Tensor, shape: tuple[int, int], topk: int = 10
) -> tuple[Tensor, Tensor]:
    """(class loss, box loss) for decoded boxes (B, 4, N), logits (B, nc, N), targets (B, M, 5)."""
    pred = xywh2xyxy(boxes.transpose(1, 2))  # (B, N, 4)
    logits = logits.transpose(1, 2)  # (B, N, nc)
    valid = targets[..., 0] >= 0  # (B, M)
    gt_cls = targets[..., 0].long().clamp(min=0)
    gt = targets[..., 1:]
    levels = [(shape[0] // s, shape[1] // s, s) for s in STRIDES]
    anchors = torch.cat([grid(h, w, s) for h, w, s in levels])
    strides = torch.cat([torch.full((h * w,), float(s)) for h, w, s in levels])
    with torch.no_grad():
        iou, _ = giou(gt[:, :, None], pred[:, None])  # (B, M, N)
        score = logits.sigmoid().transpose(1, 2).gather(1, gt_cls[..., None].expand_as(iou))
        # Candidates: anchors inside the box, or within half a stride of its centre so that
        # boxes thinner than a stride still get one.
        centre, half = (gt[..., :2] + gt[..., 2:]) / 2, (gt[..., 2:] - gt[..., :2]) / 2
        reach = torch.maximum(half[:, :, None], strides[None, None, :, None] / 2)
        cand = ((anchors[None, None] - centre[:, :, None]).abs() < reach).all(-1) & valid[..., None]
        metric = score.sqrt() * iou.pow(6) * cand
        top = torch.zeros_like(cand).scatter_(2, metric.topk(topk, dim=2).indices, True)
        fg = top & cand  # (B, M, N)
        # An anchor claimed by several objects goes to the one it overlaps most.
        multi = fg.sum(1, keepdim=True) > 1
        best = F.one_hot(iou.argmax(1), fg.shape[1]).transpose(1, 2).bool()
        fg = torch.where(multi, best & cand, fg)
        # Soft targets: each object's best-aligned anchor aims at its IoU, others scale down.
        m = metric * fg
        norm = m / (m.amax(2, keepdim=True) + 1e-9) * (iou * fg).amax(2, keepdim=True)
        pos = fg.any(1)  # (B, N)
        idx = fg.float().argmax(1)  # (B, N)
        weight = norm.amax(1)  # (B, N)
        cls_t = torch.zeros_like(logits)
        cls_t.scatter_(2, gt_cls.gather(1, idx)[..., None], weight[..., None])
        cls_t *= pos[..., None]
        gt_box = gt.gather(1, idx[..., None].expand(-1, -1, 4))
    total = cls_t.sum().clamp(min=1.0)
    cls_loss = F.binary_cross_entropy_with_logits(logits, cls_t, reduction="sum") / total
    _, g = giou(pred[pos], gt_box[pos])
    box_loss = ((1 - g) * weight[pos]).sum() / total
    return cls_loss, box_loss


# --------------------------------------------------------------------------------------------
# Training, export, checks.


def train(steps: int, batch: int, lr: float, workers: int) -> TinyDetector:
    torch.manual_seed(0)
    model = TinyDetector()
    ema = copy.deepcopy(model).eval()  # an average of the weights predicts better than the last
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)  # no weight decay on BN and biases
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    loader = torch.utils.data.DataLoader(
        RenderedScenes(steps * batch),
        batch_size=batch,
        num_workers=workers,
        worker_init_fn=lambda _: cv2.setNumThreads(1),
        prefetch_factor=4 if workers else None,
    )
    warmup, start = min(300, steps // 10), time.monotonic()
    for step, (images, targets) in enumerate(loader):
        for group in opt.param_groups:
            cosine = 0.5 * (1 + math.cos(math.pi * step / steps))
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * cosine
        boxes, logits = model(images.float() / 255)
        cls_loss, box_loss = detection_loss(boxes, logits, targets, TRAIN_SHAPE)
        loss = cls_loss + BOX_GAIN * box_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        with torch.no_grad():
            d = EMA_DECAY * (1 - math.exp(-(step + 1) / 200))  # ramps up: early weights are poor
            for e, m in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(m, alpha=1 - d)
                else:
                    e.copy_(m)
        if step % 50 == 0 or step == steps - 1:
            print(
                f"step {step:5d}/{steps}  cls {cls_loss.item():.4f}  box {box_loss.item():.4f}  "
                f"{time.monotonic() - start:6.0f} s",
                flush=True,
            )
    return ema


def export(model: TinyDetector, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter (dynamo=False) needs no onnxscript and writes the same plain
    # opset-17 graph, names and dynamic axes as an Ultralytics export.
    torch.onnx.export(
        Exported(model).eval(),
        (torch.zeros(1, 3, *TRAIN_SHAPE),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={
            "images": {0: "batch", 2: "height", 3: "width"},
            "output0": {0: "batch", 2: "anchors"},
        },
    )
    proto = onnx.load(str(path))
    # Keys and value formatting as Ultralytics writes them (str() of the Python values).
    meta = {
        "description": "streamer demo detector: persons and cars in rendered parking scenes",
        "author": "streamer",
        "version": VERSION,
        "license": "Apache-2.0",
        "stride": str(max(STRIDES)),
        "task": "detect",
        "batch": "1",
        "imgsz": "[320, 320]",
        "names": str(dict(enumerate(CLASSES))),
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    # The tracer loses the static row count; decoders read nc from it, as with Ultralytics files.
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 4 + len(CLASSES)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def check_export(model: TinyDetector, path: Path) -> None:
    """Runs the ONNX file at several batch sizes and shapes and compares with PyTorch."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapped = Exported(model).eval()
    for batch, h, w in ((1, 192, 320), (4, 192, 320), (1, 320, 320), (4, 320, 320)):
        x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(batch + h))
        got = session.run(["output0"], {"images": x.numpy()})[0]
        with torch.no_grad():
            want = wrapped(x).numpy()
        n = sum((h // s) * (w // s) for s in STRIDES)
        assert got.shape == (batch, 4 + len(CLASSES), n), got.shape
        assert np.allclose(got, want, atol=1e-3, rtol=1e-3), np.abs(got - want).max()
        print(f"onnxruntime ok: batch {batch}, {h}x{w} -> {got.shape}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--workers", type=int, default=1, help="processes rendering scenes")
    # One torch thread plus one rendering worker fill two cores; two torch threads next to the
    # worker ran no faster on an idle machine and twice as slow on a busy one.
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=Path("models/demo-detector.onnx"))
    parser.add_argument("--eval-scenes", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.monotonic()
    model = train(args.steps, args.batch, args.lr, args.workers)
    print(
        f"trained in {time.monotonic() - start:.0f} s; "
        f"{sum(p.numel() for p in model.parameters())} parameters"
    )
    export(model, args.out)
    check_export(model, args.out)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(args.out), options, providers=["CPUExecutionProvider"])
    evaluate_scenes(session, args.eval_scenes)
    evaluate_clip(session, Path("sample_videos/parking.mp4"), Path("sample_videos/parking.json"))
    print(f"total {time.monotonic() - start:.0f} s; {args.out} is {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
