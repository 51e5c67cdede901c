"""`streamer quantize`: an int8 model made from the float one, calibrated on a real clip,
checked against the float model, and run by a pipeline like any other model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from streamer.models.quantize import float_tail, match_detections
from tests.conftest import (
    DEMO_CLIP,
    DEMO_MODEL,
    REPO,
    one_source_pipeline,
    read_events,
    run_cli,
    run_with_stats,
)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> tuple[Path, dict, str]:
    """The demo detector quantized on the parking clip: (model file, JSON report, stdout)."""
    tmp = tmp_path_factory.mktemp("quantize")
    output, report = tmp / "demo.int8.onnx", tmp / "report.json"
    result = run_cli(
        "quantize", str(DEMO_MODEL), "--clip", str(DEMO_CLIP), "-o", str(output),
        "--calibration-frames", "24", "--check-frames", "40", "--json", str(report),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return output, json.loads(report.read_text()), result.stdout


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_int8_model_finds_what_the_float_model_finds(quantized):
    _, report, stdout = quantized
    agreement = report["agreement"]
    assert agreement["frames"] == 40
    assert agreement["float_boxes"] > 40  # the clip is busy: the check means something
    assert agreement["matched_fraction"] >= 0.95
    assert agreement["mean_iou"] >= 0.9
    assert report["calibration_frames"] == 24
    assert report["float_ms"] > 0 and report["int8_ms"] > 0
    assert "matched by int8 at IoU >= 0.5" in stdout and "x\n" in stdout


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_int8_model_is_quantized_and_keeps_the_metadata(quantized):
    output, _, _ = quantized
    model = onnx.load(str(output))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = {p.key: p.value for p in model.metadata_props}
    original = {p.key: p.value for p in onnx.load(str(DEMO_MODEL)).metadata_props}
    assert {k: meta[k] for k in original} == original
    assert meta["quantization"].startswith("int8 QDQ, minmax calibration on 24 frames")


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_quantized_model_is_not_quantized_again(quantized, tmp_path):
    output, _, _ = quantized
    result = run_cli(
        "quantize", str(output), "--clip", str(DEMO_CLIP), "-o", str(tmp_path / "x.onnx")
    )
    assert result.returncode == 2
    assert "already quantized" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_pipeline_runs_the_int8_model_like_any_other(quantized, tmp_path, redis_server):
    import redis

    output, _, _ = quantized
    pipeline = one_source_pipeline(tmp_path, "int8", DEMO_CLIP, output)
    result, stats = run_with_stats(pipeline, redis_server.url, "--max-frames", "30")
    assert result.returncode == 0, result.stderr
    assert stats["frames"]["processed"] == 30
    client = redis.Redis.from_url(redis_server.url)
    events = read_events(client, "streamer:int8:events")
    client.close()
    boxes = [o for e in events if e["type"] == "detections" for o in e["objects"]]
    assert boxes and {o["label"] for o in boxes} <= {"person", "car"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, message",
    [
        (["--clip", "missing.mp4"], "missing.mp4: file not found"),
        (["--clip", str(REPO / "README.md")], "README.md: not a readable video"),
        (["--clip", str(DEMO_CLIP), "-o", str(DEMO_MODEL)], "would overwrite the float model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run_cli("quantize", str(DEMO_MODEL), *args, "--check-frames", "2")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_a_file_that_is_not_a_model_is_one_line_and_exit_2():
    result = run_cli("quantize", str(DEMO_CLIP), "--clip", str(DEMO_CLIP))
    assert result.returncode == 2
    assert "not a usable ONNX model" in result.stderr and "Traceback" not in result.stderr


def test_matching_pairs_boxes_one_to_one_by_class():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    b = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    ious = match_detections(a, np.array([0, 0, 1]), b, np.array([0, 0, 0]))
    # The two class-0 boxes pair with the two class-0 boxes once each; the class-1 box
    # finds no box of its class although one lies exactly on it.
    assert sorted(ious.round(2).tolist()) == [0.9, 1.0]


def test_nothing_matches_below_the_iou_threshold():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[6, 0, 16, 10]], np.float32)
    assert match_detections(a, np.array([0]), b, np.array([0])).size == 0
    assert match_detections(a, np.array([0]), b[:0], np.array([], int)).size == 0


def test_the_decoding_tail_stays_float():
    # A YOLOv8-like head: two convolutions, the box distribution (Softmax, then a
    # convolution with fixed weights) and the join of boxes with class scores. The last
    # convolution of each branch and all that follows stay float; the box branch's first
    # convolution is followed by another and is quantized.
    graph = [
        ("box_conv", "Conv", ["x"], ["box"]),
        ("cls_conv", "Conv", ["x"], ["cls"]),
        ("softmax", "Softmax", ["box"], ["dist"]),
        ("dfl", "Conv", ["dist"], ["ltrb"]),
        ("decode", "Mul", ["ltrb"], ["xywh"]),
        ("sigmoid", "Sigmoid", ["cls"], ["scores"]),
        ("join", "Concat", ["xywh", "scores"], ["output"]),
    ]
    assert float_tail(graph) == ["cls_conv", "softmax", "dfl", "decode", "sigmoid", "join"]
