"""int8 models: static QDQ quantization calibrated on frames of the user's own video, and
a report of how fast the result runs and how closely its detections agree with the float
model's on other frames of the same video.

The recipe: ONNX Runtime's static quantizer in QDQ format, uint8 activations and int8
weights per output channel (the pairing the x86 int8 kernels run fastest), activation
ranges from MinMax calibration over frames prepared exactly as the pipeline prepares
them. The decoding tail of the detector stays in float: everything after a Softmax (the
YOLOv8 box distribution), and the last convolution of each branch with everything
after it (the output that joins box coordinates in pixels with class scores in 0..1,
which no single int8 scale can hold).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamer.analytics.boxes import match_by_iou, nms
from streamer.errors import ModelError, SourceError
from streamer.models import Model
from streamer.runtime.messages import Frame
from streamer.stages.preprocess import tensor_of

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger")
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear need opset 13
MATCH_IOU = 0.5
MIN_AGREEMENT = 0.95  # of the float model's detections, below which int8 is not advised
MAX_DETECTIONS = 300


@dataclass(frozen=True)
class Agreement:
    """How the quantized model's detections compare with the float model's."""

    frames: int
    float_boxes: int
    int8_boxes: int
    matched: int  # float boxes with an int8 box of the same class at IoU >= MATCH_IOU
    mean_iou: float  # over the matched pairs

    @property
    def matched_fraction(self) -> float:
        return self.matched / self.float_boxes if self.float_boxes else 1.0


@dataclass(frozen=True)
class QuantizeReport:
    model: str
    output: str
    calibration_frames: int
    float_ms: float  # mean per frame, batch 1, measured alternately with int8
    int8_ms: float
    agreement: Agreement

    @property
    def speedup(self) -> float:
        return self.float_ms / self.int8_ms

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["speedup"] = round(self.speedup, 3)
        data["agreement"]["matched_fraction"] = round(self.agreement.matched_fraction, 4)
        return data


def match_detections(
    a_xyxy: np.ndarray,
    a_classes: np.ndarray,
    b_xyxy: np.ndarray,
    b_classes: np.ndarray,
    min_iou: float = MATCH_IOU,
) -> np.ndarray:
    """IoUs of the one-to-one matches between boxes `a` and `b` of the same class with IoU
    of at least `min_iou`, chosen to maximise the total IoU.

    >>> a = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    >>> b = np.array([[0, 0, 10, 9], [20, 0, 30, 10]], np.float32)
    >>> match_detections(a, np.array([0, 0]), b, np.array([0, 1])).round(2).tolist()
    [0.9]
    """
    a_xyxy, b_xyxy = a_xyxy.astype(np.float64), b_xyxy.astype(np.float64)
    pairs = match_by_iou(a_xyxy, a_classes, b_xyxy, b_classes, min_iou)
    return np.array([iou for _, _, iou in pairs], np.float64)


def float_tail(nodes: list[tuple[str, str, list[str], list[str]]]) -> list[str]:
    """Names of the nodes to keep in float: a Softmax and everything after it, and every
    node after which no convolution follows (the last convolutions included). `nodes`
    are (name, op_type, inputs, outputs) in the graph's (topological) order.

    >>> graph = [("c1", "Conv", ["x"], ["a"]), ("s", "Sigmoid", ["a"], ["b"]),
    ...          ("c2", "Conv", ["b"], ["c"]), ("cat", "Concat", ["c", "a"], ["y"])]
    >>> float_tail(graph)
    ['c2', 'cat']
    """
    consumers: dict[str, list[int]] = {}
    for index, (_, _, inputs, _) in enumerate(nodes):
        for name in inputs:
            consumers.setdefault(name, []).append(index)
    after_softmax = [False] * len(nodes)
    for index, (_, op, _, outputs) in enumerate(nodes):
        if op == "Softmax" or after_softmax[index]:
            after_softmax[index] = True
            for out in outputs:
                for later in consumers.get(out, []):
                    after_softmax[later] = True
    conv_follows = [False] * len(nodes)
    for index in range(len(nodes) - 1, -1, -1):
        for out in nodes[index][3]:
            for later in consumers.get(out, []):
                if nodes[later][1] == "Conv" or conv_follows[later]:
                    conv_follows[index] = True
    return [nodes[i][0] for i in range(len(nodes)) if after_softmax[i] or not conv_follows[i]]


def sample_tensors(model: Model, clips: list[Path], count: int) -> list[np.ndarray]:
    """`count` model inputs from frames spread evenly over the clips, prepared as the
    pipeline prepares them (letterbox, channel order, scale)."""
    per_clip = [count // len(clips) + (i < count % len(clips)) for i in range(len(clips))]
    tensors: list[np.ndarray] = []
    for clip, wanted in zip(clips, per_clip, strict=True):
        for picture in _spread_frames(clip, wanted):
            frame = Frame("calibration", 0, None, 0, 0.0, None, picture, 0.0)
            hw = model.input_hw_for((frame.height, frame.width))
            tensors.append(tensor_of(frame, model.spec, hw))
    return tensors


def _spread_frames(clip: Path, wanted: int) -> Iterator[av.VideoFrame]:
    if not clip.is_file():
        raise SourceError(f"{clip}: file not found")
    try:
        with av.open(os.fspath(clip)) as container:
            stream = container.streams.video[0]
            total = stream.frames or _count_frames(clip)
            picks = set(np.linspace(0, total - 1, min(wanted, total)).round().astype(int).tolist())
            for index, picture in enumerate(container.decode(stream)):
                if index in picks:
                    yield picture
    except (av.error.FFmpegError, IndexError) as exc:
        raise SourceError(f"{clip}: not a readable video ({exc})") from None


def _count_frames(clip: Path) -> int:
    with av.open(os.fspath(clip)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def quantize(
    model_path: Path,
    output: Path,
    calibration: list[np.ndarray],
    input_name: str,
    method: str = "minmax",
) -> None:
    """Write a QDQ int8 copy of the float model at `model_path` to `output`, calibrated on
    `calibration` (inputs of shape [3, H, W]). The float model's metadata is kept."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

    class Frames(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._tensors = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            tensor = next(self._tensors, None)
            return None if tensor is None else {input_name: tensor[None]}

    original = onnx.load(os.fspath(model_path))
    if any(
        n.op_type in QUANTIZED_OPS or n.op_type.startswith("QLinear") for n in original.graph.node
    ):
        raise ModelError(f"{model_path}: already quantized; quantize the float model")
    try:
        _quantize_graph(original, output, Frames(), method)
    except Exception as exc:  # the quantizer raises bare exceptions of many kinds
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{model_path}: cannot be quantized ({first_line})") from exc
    quantized = onnx.load(os.fspath(output))
    onnx.helper.set_model_props(
        quantized,
        {p.key: p.value for p in original.metadata_props}
        | {"quantization": f"int8 QDQ, {method} calibration on {len(calibration)} frames"},
    )
    onnx.save(quantized, os.fspath(output))


def _quantize_graph(original: Any, output: Path, reader: Any, method: str) -> None:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="streamer-quantize-") as tmp:
        upgraded = original
        opset = next((o.version for o in original.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < MIN_OPSET:
            upgraded = version_converter.convert_version(original, MIN_OPSET)
        staged = Path(tmp) / "float.onnx"
        onnx.save(upgraded, os.fspath(staged))
        # Shape inference and graph clean-up, as ONNX Runtime's quantizer expects.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(os.fspath(staged), os.fspath(prepared), skip_symbolic_shape=True)
        graph = onnx.load(os.fspath(prepared)).graph
        nodes = [(n.name, n.op_type, list(n.input), list(n.output)) for n in graph.node]
        quantize_static(
            os.fspath(prepared),
            os.fspath(output),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=methods[method],
            nodes_to_exclude=float_tail(nodes),
        )


def compare(
    float_model: Model,
    int8_model: Model,
    tensors: list[np.ndarray],
    confidence: float,
    iou: float,
) -> tuple[float, float, Agreement]:
    """Mean ms per frame of each model and how their detections agree on `tensors`.

    The two models run alternately frame by frame, so a change of the machine's speed
    during the measurement weighs on both alike.
    """
    spent = {"float": 0.0, "int8": 0.0}
    float_boxes = int8_boxes = 0
    ious: list[np.ndarray] = []
    for model in (float_model, int8_model):
        model.run(tensors[0][None])  # the first call allocates
    for tensor in tensors:
        found = {}
        for name, model in (("float", float_model), ("int8", int8_model)):
            started = time.perf_counter()
            output = model.run(tensor[None])[0]
            spent[name] += time.perf_counter() - started
            hw = (tensor.shape[1], tensor.shape[2])
            xyxy, scores, classes = model.candidates(output, hw, confidence)
            keep = nms(xyxy, scores, classes, iou, MAX_DETECTIONS)
            found[name] = (xyxy[keep], classes[keep])
        float_boxes += len(found["float"][0])
        int8_boxes += len(found["int8"][0])
        ious.append(match_detections(*found["float"], *found["int8"]))
    matched = np.concatenate(ious) if ious else np.empty((0,))
    agreement = Agreement(
        frames=len(tensors),
        float_boxes=float_boxes,
        int8_boxes=int8_boxes,
        matched=int(matched.size),
        mean_iou=round(float(matched.mean()), 4) if matched.size else 0.0,
    )
    per_frame_ms = {name: 1000 * s / len(tensors) for name, s in spent.items()}
    return round(per_frame_ms["float"], 2), round(per_frame_ms["int8"], 2), agreement


def quantize_and_check(
    model_path: Path,
    output: Path,
    clips: list[Path],
    calibration_frames: int = 64,
    check_frames: int = 100,
    method: str = "minmax",
    confidence: float = 0.25,
    iou: float = 0.45,
    threads: int | None = None,
) -> QuantizeReport:
    """Quantize `model_path` into `output` and measure the result against the original."""
    if output.resolve() == model_path.resolve():
        raise ModelError(f"{output}: would overwrite the float model")
    # One session each, timed one call at a time on every core.
    float_model = Model.load(model_path, providers=("cpu",), threads=threads, workers=1)
    # Calibration and check frames interleave over the clips and never coincide; short
    # clips give fewer of each, in the same proportion.
    spread = sample_tensors(float_model, clips, calibration_frames + check_frames)
    if len(spread) < 2:
        raise SourceError(f"{', '.join(map(str, clips))}: too few frames to calibrate and check")
    wanted = max(
        1,
        min(
            len(spread) - 1,
            round(len(spread) * calibration_frames / (calibration_frames + check_frames)),
        ),
    )
    step = len(spread) / wanted
    calibration_idx = {int(i * step) for i in range(wanted)}
    calibration = [t for i, t in enumerate(spread) if i in calibration_idx]
    check = [t for i, t in enumerate(spread) if i not in calibration_idx]
    log.info("calibrating on %d frames, checking on %d", len(calibration), len(check))
    output.parent.mkdir(parents=True, exist_ok=True)
    quantize(model_path, output, calibration, float_model.spec.input_name, method)
    int8_model = Model.load(output, providers=("cpu",), threads=threads, workers=1)
    float_ms, int8_ms, agreement = compare(float_model, int8_model, check, confidence, iou)
    return QuantizeReport(
        model=str(model_path),
        output=str(output),
        calibration_frames=len(calibration),
        float_ms=float_ms,
        int8_ms=int8_ms,
        agreement=agreement,
    )
