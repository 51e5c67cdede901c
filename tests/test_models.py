"""Model loading: family recognition on real exports, fixed-batch padding, provider choice."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from streamer.errors import ModelError
from streamer.models import Model
from streamer.models.sessions import WorkerPlan, choose_providers, plan_workers


def fixed_batch_model(path: Path, batch: int = 4, half: bool = False) -> Path:
    """A YOLOv8-shaped ONNX model with a fixed batch: output [B, 6, 21] cut from the input
    (which is float16 with `half`)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def const(name: str, values: list[int]) -> object:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(
            name, TensorProto.INT64, [len(values)], values))  # fmt: skip

    nodes = [
        const("starts", [0]), const("ends", [126]), const("axes", [1]),
        const("shape", [batch, 6, 21]),
        helper.make_node("Cast", ["images"], ["images32"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["images32"], ["flat"]),
        helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["cut"]),
        helper.make_node("Reshape", ["cut", "shape"], ["output0"]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "fixed_batch",
        [
            helper.make_tensor_value_info(
                "images", TensorProto.FLOAT16 if half else TensorProto.FLOAT, [batch, 3, 32, 32]
            )
        ],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 6, 21])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_fixed_batch_is_padded_and_only_the_real_frames_come_back(tmp_path):
    model = Model.load(fixed_batch_model(tmp_path / "m.onnx"), providers=("cpu",))
    assert (model.spec.family, model.spec.batch, model.spec.input_hw) == ("yolov8", 4, (32, 32))
    assert model.spec.labels == ("class_0", "class_1")
    batch = np.stack([np.full((3, 32, 32), v, np.float32) for v in (1.0, 2.0)])
    out = model.run(batch)
    assert out.shape == (2, 6, 21)
    assert out[0].min() == out[0].max() == 1.0
    assert out[1].min() == out[1].max() == 2.0


def test_a_half_precision_input_gets_float16(tmp_path):
    model = Model.load(
        fixed_batch_model(tmp_path / "m.onnx", batch=2, half=True), providers=("cpu",)
    )
    assert model.spec.input_dtype == "float16"
    out = model.run(np.full((1, 3, 32, 32), 0.5, np.float32))
    assert out.dtype == np.float32 and out.shape == (1, 6, 21) and float(out.max()) == 0.5


def test_yolox_nano_is_recognised(yolox_nano):
    spec = Model.load(yolox_nano, providers=("cpu",)).spec
    assert spec.family == "yolox"
    assert (spec.input_hw, spec.batch) == ((416, 416), 1)
    assert (spec.rgb, spec.scale, spec.centered) == (False, 1.0, False)
    assert spec.labels[:3] == ("person", "bicycle", "car") and spec.num_classes == 80


def test_an_ultralytics_export_is_recognised_from_its_metadata(yolov8n):
    model = Model.load(yolov8n, providers=("cpu",))
    spec = model.spec
    assert (spec.family, spec.input_hw, spec.batch, spec.imgsz, spec.stride) == (
        "yolov8", None, None, 640, 32)  # fmt: skip
    assert (spec.rgb, spec.scale, spec.centered) == (True, 1 / 255, True)
    assert model.input_hw_for((720, 1280)) == (384, 640)
    assert model.input_hw_for((432, 768)) == (384, 640)


def test_a_yolo11_export_reads_like_a_yolov8_one(yolo11n):
    model = Model.load(yolo11n, providers=("cpu",))
    assert (model.spec.family, model.spec.num_classes) == ("yolov8", 80)
    out = model.run(np.zeros((2, 3, 384, 640), np.float32))
    assert out.shape == (2, 84, 5040)  # 48x80 + 24x40 + 12x20 anchors


def test_labels_and_input_size_can_be_given(yolov8n):
    labels = [f"thing{i}" for i in range(80)]
    spec = Model.load(yolov8n, labels=labels, imgsz=320, providers=("cpu",)).spec
    assert spec.labels[79] == "thing79" and spec.imgsz == 320


def test_the_wrong_number_of_labels_is_refused(yolov8n):
    with pytest.raises(ModelError, match="2 labels given but the model has 80 classes"):
        Model.load(yolov8n, labels=["a", "b"], providers=("cpu",))


def test_forcing_the_wrong_family_is_refused(yolov8n):
    with pytest.raises(ModelError, match="not a YOLOX-style model"):
        Model.load(yolov8n, format="yolox", providers=("cpu",))


def test_unusable_gpu_providers_fall_back_to_cpu_with_one_warning(caplog):
    import onnxruntime as ort

    with caplog.at_level(logging.WARNING):
        chosen = choose_providers(["tensorrt", "cuda", "cpu"])
    assert chosen[-1] == "CPUExecutionProvider"
    if chosen == ["CPUExecutionProvider"] and len(ort.get_available_providers()) > 1:
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "using CPU" in warnings[0].getMessage()


def test_cpu_is_always_the_last_resort():
    assert choose_providers(["cpu"]) == ["CPUExecutionProvider"]
    assert choose_providers(["cuda"])[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize(
    ("provider", "workers", "threads", "cores", "plan"),
    [
        ("CPUExecutionProvider", None, None, 2, WorkerPlan(2, 1)),
        ("CPUExecutionProvider", None, None, 16, WorkerPlan(2, 8)),
        ("CPUExecutionProvider", None, None, 1, WorkerPlan(1, None)),
        ("CPUExecutionProvider", 1, None, 16, WorkerPlan(1, None)),  # ONNX Runtime's default
        ("CPUExecutionProvider", 3, None, 2, WorkerPlan(3, 1)),
        ("CPUExecutionProvider", None, 4, 16, WorkerPlan(2, 4)),
        ("CUDAExecutionProvider", None, None, 16, WorkerPlan(1, None)),
        ("TensorrtExecutionProvider", 2, None, 16, WorkerPlan(2, None)),
    ],
)
def test_workers_and_threads_default_to_two_sessions_sharing_the_cpu(
    provider, workers, threads, cores, plan
):
    assert plan_workers(provider, workers, threads, cores) == plan


def test_two_workers_run_two_batches_at_once_with_the_same_results(yolov8n):
    """Two threads call at once; each call takes a session of its own, and the outputs
    are those of one session alone."""
    one = Model.load(yolov8n, providers=("cpu",), workers=1)
    two = Model.load(yolov8n, providers=("cpu",), workers=2, threads=1)
    assert (one.workers, two.workers) == (1, 2)
    rng = np.random.default_rng(0)
    batches = [rng.random((2, 3, 320, 320), np.float32) for _ in range(2)]
    expected = [one.run(b) for b in batches]
    got: list[np.ndarray | None] = [None, None]
    start = threading.Barrier(2)

    def call(i: int) -> None:
        start.wait()
        for _ in range(3):
            got[i] = two.run(batches[i])

    callers = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    for want, have in zip(expected, got, strict=True):
        assert have is not None
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-3)


def test_warm_up_runs_every_session(yolov8n, monkeypatch):
    model = Model.load(yolov8n, providers=("cpu",), workers=2, threads=1)
    calls: list[tuple[int, int]] = []
    original = Model._run_on

    def recording(self: Model, session: object, batch: np.ndarray) -> np.ndarray:
        calls.append((id(session), len(batch)))
        return original(self, session, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(Model, "_run_on", recording)
    assert model.warm_up(2) > 0
    assert len({runner for runner, _ in calls}) == 2
    assert {size for _, size in calls} == {2}
