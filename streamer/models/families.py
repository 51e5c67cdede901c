"""Which detector family a model belongs to, read from its inputs, outputs and metadata.

The family decides the pre-processing (channel order, scale, letterbox placement)
and the output decoder:

- yolov8 (Ultralytics YOLOv8/YOLO11 exports): input `[B,3,H,W]`, often dynamic; output
  `[B, 4+nc, N]`; RGB, /255, centred letterbox.
- yolox (Megvii YOLOX exports): fixed input; output `[B, N, 5+nc]` with N the cells of
  strides 8, 16, 32; BGR, 0..255, top-left letterbox.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from streamer.errors import ConfigError, ModelError
from streamer.models.decoders import yolox_rows
from streamer.models.labels import COCO_LABELS

FAMILIES = ("yolov8", "yolox")
INPUT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}
DEFAULT_IMGSZ = 640
PAD_VALUE = 114  # the grey both Ultralytics and YOLOX pad with


@dataclass(frozen=True)
class ModelSpec:
    """What the pipeline needs to know to feed a model and read its output."""

    family: str
    input_name: str
    batch: int | None  # a fixed batch size, or None when the batch axis is dynamic
    input_hw: tuple[int, int] | None  # a fixed input size, or None when it is dynamic
    imgsz: int  # for a dynamic input: the long side frames are scaled to
    stride: int  # for a dynamic input: each side is a multiple of this
    labels: tuple[str, ...]
    rgb: bool
    scale: float  # pixel values are multiplied by this (1/255 or 1)
    centered: bool  # letterbox placement: centred, or top-left
    input_dtype: str = "float32"  # float32, or float16 for half-precision exports

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def class_ids(self, labels: list[str] | None, where: str) -> frozenset[int] | None:
        """The ids of `labels` (None: every class); ConfigError naming `where` (the
        pipeline field that lists them) for a label the model does not have."""
        if labels is None:
            return None
        unknown = [name for name in labels if name not in self.labels]
        if unknown:
            known = self.labels
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise ConfigError(f"{where}: unknown label {unknown[0]!r} (the model has: {shown})")
        return frozenset(self.labels.index(name) for name in labels)


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _describe(session: ort.InferenceSession) -> str:
    inputs = ", ".join(f"{i.name} {i.shape}" for i in session.get_inputs())
    outputs = ", ".join(f"{o.name} {o.shape}" for o in session.get_outputs())
    return f"inputs: {inputs}; outputs: {outputs}"


def _metadata_labels(meta: dict[str, str]) -> tuple[str, ...] | None:
    """Class names from Ultralytics' `names` metadata: "{0: 'person', 1: 'bicycle'}"."""
    if "names" not in meta:
        return None
    try:
        names = ast.literal_eval(meta["names"])
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        return tuple(str(names[k]) for k in sorted(names))
    if isinstance(names, list):
        return tuple(str(n) for n in names)
    return None


def _default_labels(num_classes: int) -> tuple[str, ...]:
    if num_classes == len(COCO_LABELS):
        return COCO_LABELS
    return tuple(f"class_{i}" for i in range(num_classes))


def recognise(
    session: ort.InferenceSession,
    path: Path,
    format: str = "auto",
    labels: list[str] | None = None,
    imgsz: int | None = None,
) -> ModelSpec:
    """The spec of a loaded model; ModelError naming what was found when it does not fit."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelError(f"{path}: expected one image input [B,3,H,W]; {_describe(session)}")
    if len(outputs) != 1 or len(outputs[0].shape) != 3:
        raise ModelError(f"{path}: expected one detection output of rank 3; {_describe(session)}")
    input_dtype = INPUT_TYPES.get(inputs[0].type)
    if input_dtype is None:
        raise ModelError(
            f"{path}: input {inputs[0].name} is {inputs[0].type}; "
            "expected float or float16 images; " + _describe(session)
        )
    batch, channels, height, width = (_dim(d) for d in inputs[0].shape)
    if channels not in (None, 3):
        raise ModelError(f"{path}: expected a 3-channel image input; {_describe(session)}")
    fixed_hw = (height, width) if height and width else None
    _, d1, d2 = (_dim(d) for d in outputs[0].shape)

    if meta.get("end2end", "").lower() == "true":
        raise ModelError(
            f"{path}: end-to-end exports (NMS inside the model) are not supported yet; "
            "export without NMS"
        )
    family = format if format != "auto" else _guess_family(meta, fixed_hw, d1, d2)
    if family is None:
        raise ModelError(
            f"{path}: cannot tell the model family (supported: {', '.join(FAMILIES)}); "
            f"{_describe(session)}; set model.format"
        )

    given_labels = tuple(labels) if labels else _metadata_labels(meta)
    if family == "yolov8":
        if d1 is None:  # some exporters leave the channel axis symbolic: run once to see it
            hw = fixed_hw or (imgsz or DEFAULT_IMGSZ,) * 2
            d1 = _probe_output_shape(session, batch, hw, input_dtype)[1]
        if d1 < 5:
            raise ModelError(
                f"{path}: not a YOLOv8-style output [B, 4+nc, N]; {_describe(session)}"
            )
        num_classes = d1 - 4
        centered, rgb, scale = True, True, 1 / 255
    else:
        if d2 is None or d2 < 6 or fixed_hw is None:
            raise ModelError(
                f"{path}: not a YOLOX-style model (fixed input, output [B, N, 5+nc]); "
                f"{_describe(session)}"
            )
        num_classes = d2 - 5
        centered, rgb, scale = False, False, 1.0

    if format != "auto":
        hw = fixed_hw or (imgsz or DEFAULT_IMGSZ,) * 2
        problem = _not_of_family(family, session, batch, hw, input_dtype, num_classes)
        if problem is not None:
            raise ModelError(
                f"{path}: model.format {family}: its output cannot be that family's ({problem}); "
                f"{_describe(session)}; set model.format: auto or the model's own family"
            )
    found_labels = given_labels or _default_labels(num_classes)
    if len(found_labels) != num_classes:
        raise ModelError(
            f"{path}: {len(found_labels)} labels given but the model has {num_classes} classes"
        )
    return ModelSpec(
        family=family,
        input_name=inputs[0].name,
        batch=batch,
        input_hw=fixed_hw,
        imgsz=imgsz or _metadata_imgsz(meta) or DEFAULT_IMGSZ,
        stride=int(meta.get("stride", 32)),
        labels=found_labels,
        rgb=rgb,
        scale=scale,
        centered=centered,
        input_dtype=input_dtype,
    )


MAX_CLASSES = 2000  # more than any detection dataset has (LVIS: 1203)
SCORE_SLACK = 1e-3  # sigmoid outputs in fp16 may exceed 1 by rounding


def _not_of_family(
    family: str,
    session: ort.InferenceSession,
    batch: int | None,
    input_hw: tuple[int, int],
    dtype: str,
    num_classes: int,
) -> str | None:
    """Why a model told to be of `family` cannot be (None: it can): a class count no
    dataset has, or scores outside 0..1 on an input of noise (they are probabilities in
    both families; a box coordinate read as a score is not)."""
    if num_classes > MAX_CLASSES:
        return f"{num_classes} classes"
    scale = 1.0 if family == "yolov8" else 255.0
    noise = np.random.default_rng(0).uniform(0, scale, (batch or 1, 3, *input_hw)).astype(dtype)
    (output,) = session.run(None, {session.get_inputs()[0].name: noise})
    scores = output[0, 4:, :] if family == "yolov8" else output[0, :, 4:]
    if scores.size and not (
        float(scores.min()) >= -SCORE_SLACK and float(scores.max()) <= 1 + SCORE_SLACK
    ):
        return f"scores from {float(scores.min()):.3g} to {float(scores.max()):.3g}, not 0 to 1"
    return None


def _probe_output_shape(
    session: ort.InferenceSession, batch: int | None, input_hw: tuple[int, int], dtype: str
) -> tuple[int, ...]:
    """The output shape of one inference on a blank input."""
    blank = np.zeros((batch or 1, 3, *input_hw), dtype)
    (output,) = session.run(None, {session.get_inputs()[0].name: blank})
    return tuple(int(d) for d in output.shape)


def _metadata_imgsz(meta: dict[str, str]) -> int | None:
    try:
        value: Any = ast.literal_eval(meta.get("imgsz", "None"))
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return int(max(value))
    return None


def _guess_family(
    meta: dict[str, str],
    fixed_hw: tuple[int, int] | None,
    d1: int | None,
    d2: int | None,
) -> str | None:
    if meta.get("task") == "detect" and "names" in meta:
        return "yolov8"  # an Ultralytics export says so in its metadata
    if fixed_hw is not None and d1 == yolox_rows(fixed_hw) and d2 is not None and d2 >= 6:
        return "yolox"
    if d1 is not None and d2 is not None and 5 <= d1 < d2:
        return "yolov8"  # [B, 4+nc, N] with many more anchors than channels
    return None
