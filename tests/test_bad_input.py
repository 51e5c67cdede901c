"""Mistakes at start: one line naming the file, field or URL, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, write_pipeline
from tools.local_redis import free_port

pytestmark = pytest.mark.integration


def pipeline_text(video: Path | str, model: Path | str, extra: str = "") -> str:
    return (
        f"name: t\nsources:\n  - {{id: cam1, uri: '{video}'}}\nmodel:\n  path: '{model}'\n{extra}"
    )


def unknown_family_model(path: Path) -> Path:
    """A valid ONNX file that is no detector: one input, output [1, 10]."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["images"], ["flat"]),
            helper.make_node("ReduceMean", ["flat"], ["out"], axes=[1], keepdims=1),
        ],
        "not_a_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("streamer: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture
def unreachable_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_missing_pipeline_file(tmp_path, redis_server):
    result = run_cli("run", str(tmp_path / "nope.yaml"), "--redis-url", redis_server.url)
    assert_one_line_error(result, "nope.yaml: pipeline file not found")


def test_invalid_yaml(tmp_path, redis_server):
    path = write_pipeline(tmp_path / "bad.yaml", "name: t\nsources: [\n")
    assert_one_line_error(
        run_cli("run", str(path), "--redis-url", redis_server.url), "bad.yaml:", "invalid YAML"
    )


def test_unknown_key(tmp_path, redis_server, demo_clip, demo_model):
    path = write_pipeline(
        tmp_path / "p.yaml", pipeline_text(demo_clip, demo_model, "realtime: {budget: 3}\n")
    )
    assert_one_line_error(run_cli("validate", str(path)), "p.yaml: realtime.budget: unknown key")


def test_wrong_value(tmp_path, demo_clip, demo_model):
    path = write_pipeline(
        tmp_path / "p.yaml", pipeline_text(demo_clip, demo_model, "  batch: {max_size: 0}\n")
    )
    assert_one_line_error(
        run_cli("validate", str(path)),
        "model.batch.max_size: Input should be greater than or equal to 1, got 0",
    )


def test_missing_model(tmp_path, redis_server, demo_clip):
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, tmp_path / "m.onnx"))
    assert_one_line_error(
        run_cli("run", str(path), "--redis-url", redis_server.url), "m.onnx: model file not found"
    )


def test_a_file_that_is_not_onnx(tmp_path, redis_server, demo_clip):
    model = tmp_path / "m.onnx"
    model.write_text("this is not a model\n")
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, model))
    assert_one_line_error(
        run_cli("run", str(path), "--redis-url", redis_server.url),
        "m.onnx: not a usable ONNX model",
    )


def test_a_model_of_unknown_family(tmp_path, redis_server, demo_clip):
    model = unknown_family_model(tmp_path / "m.onnx")
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, model))
    assert_one_line_error(
        run_cli("run", str(path), "--redis-url", redis_server.url), "m.onnx:", "out [1, 1]"
    )
    assert_one_line_error(run_cli("inspect", str(model)), "m.onnx:")


def test_unknown_label_in_the_class_filter(tmp_path, demo_clip, demo_model):
    path = write_pipeline(
        tmp_path / "p.yaml",
        pipeline_text(demo_clip, demo_model, "  classes: [person, unicorn]\n"),
    )
    assert_one_line_error(
        run_cli("validate", str(path)),
        "p.yaml: model.classes: unknown label 'unicorn' (the model has: person, car)",
    )


def test_missing_video(tmp_path, redis_server, demo_model):
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(tmp_path / "v.mp4", demo_model))
    assert_one_line_error(
        run_cli("run", str(path), "--redis-url", redis_server.url), "v.mp4: video file not found"
    )


def test_a_file_that_is_not_a_video(tmp_path, redis_server, demo_model):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00garbage" * 1000)
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(video, demo_model))
    assert_one_line_error(
        run_cli("run", str(path), "--redis-url", redis_server.url), "v.mp4: not a video file"
    )


def test_unreachable_redis_at_start(tmp_path, demo_clip, demo_model, unreachable_redis):
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, demo_model))
    assert_one_line_error(
        run_cli("run", str(path), "--redis-url", unreachable_redis),
        f"{unreachable_redis}: Redis unreachable",
    )


def test_redis_password_is_never_printed(tmp_path, demo_clip, demo_model):
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, demo_model))
    result = run_cli("run", str(path), "--redis-url", url)
    assert_one_line_error(result, "redis://user:***@127.0.0.1")
    assert "s3cret" not in result.stderr + result.stdout


def test_a_source_id_on_the_command_line_that_is_too_long(tmp_path, demo_clip, demo_model):
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, demo_model))
    result = run_cli("run", str(path), "--source", f"{'x' * 65}={demo_clip}")
    assert_one_line_error(result, "--source xxx", "String should have at most 64 characters")


def test_bad_usage(tmp_path):
    result = run_cli("run", str(tmp_path / "p.yaml"), "--max-frames", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_a_stream_key_that_holds_something_else(tmp_path, redis_server, redis_client, demo_clip,
                                                demo_model):  # fmt: skip
    redis_client.set("streamer:t:events", "not a stream")
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, demo_model))
    assert_one_line_error(
        run_cli("run", str(path), "--redis-url", redis_server.url),
        "key 'streamer:t:events' holds a string, not a stream",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  batch: {max_size: 1000000000}\n", "model.batch.max_size: Input should be less"),
        ("realtime: {max_latency_ms: -1}\n", "realtime.max_latency_ms: Input should be greater"),
        ("  confidence: .nan\n", "model.confidence: "),
        ("queues: {decoded: {size: 1000000}}\n", "queues.decoded.size: Input should be less"),
        (
            "zones: [{name: z, polygon: [[0, 0], [.inf, 0], [9, 9]]}]\n",
            "zones[0].polygon[1][0]: Input should be a finite number, got inf",
        ),
        ("  classes: []\n", "model.classes: List should have at least 1 item"),
        ("name: u\n", "invalid YAML: key 'name' is given twice"),
    ],
)
def test_absurd_values_are_refused_at_start(tmp_path, demo_clip, demo_model, extra, message):
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, demo_model, extra))
    assert_one_line_error(run_cli("validate", str(path)), f"{path}", message)


def test_passwords_come_from_the_environment_and_an_unset_one_is_named(
    tmp_path, redis_server, redis_client, demo_clip, demo_model, monkeypatch
):
    text = pipeline_text("${T_CLIP}", demo_model, "sink:\n  redis:\n    url: ${T_REDIS_URL}\n")
    path = write_pipeline(tmp_path / "p.yaml", text)
    monkeypatch.setenv("T_CLIP", str(demo_clip))
    monkeypatch.setenv("T_REDIS_URL", redis_server.url)
    result = run_cli("run", str(path), "--max-frames", "5")
    assert result.returncode == 0, result.stderr
    assert redis_client.xlen("streamer:t:events") > 0
    monkeypatch.delenv("T_REDIS_URL")
    assert_one_line_error(
        run_cli("run", str(path)),
        "p.yaml: sink.redis.url: the environment variable T_REDIS_URL is not set",
    )


def test_validate_refuses_a_url_that_cannot_work_without_the_network(tmp_path, demo_model):
    text = pipeline_text("rtspx://viewer:s3cret@10.0.0.7/stream1", demo_model)
    path = write_pipeline(tmp_path / "p.yaml", text)
    result = run_cli("validate", str(path))
    assert_one_line_error(result, "p.yaml: sources[0].uri: rtspx:// is not a kind of URL")
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [(("--duration", "nan"), "nan is not a number of seconds"),
     (("--duration", "inf"), "inf is not a number of seconds"),
     (("--stats-json", "/nonexistent-folder/stats.json"), "the folder /nonexistent-folder"),
     (("--stats-json", "."), "is a folder")],
)  # fmt: skip
def test_flags_that_cannot_work_are_refused_before_the_run(tmp_path, demo_clip, demo_model, args,
                                                           says):  # fmt: skip
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, demo_model, "sink: none\n"))
    result = run_cli("run", str(path), *args)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert "model demo-detector.onnx" not in result.stderr  # refused before any work


def test_the_start_up_log_names_the_stream(tmp_path, redis_server, demo_clip, demo_model):
    path = write_pipeline(tmp_path / "p.yaml", pipeline_text(demo_clip, demo_model))
    result = run_cli("run", str(path), "--redis-url", redis_server.url, "--max-frames", "2")
    assert result.returncode == 0, result.stderr
    assert f"writing events to {redis_server.url}, stream streamer:t:events" in result.stderr


def yolox_like_model(path: Path) -> Path:
    """A YOLOX-layout ONNX file (input [1,3,64,64], output [1, 84 rows, 4 box + 1 + 80]):
    box columns of 32 px, scores of 0.5, whatever the picture."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rows = np.full((1, 84, 85), 0.5, np.float32)
    rows[..., :4] = 32.0
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "rows"], ["output"]),
        ],
        "yolox_like",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 84, 85])],
        initializer=[
            numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero"),
            numpy_helper.from_array(rows, "rows"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_forced_format_the_outputs_cannot_be_is_refused(tmp_path, demo_clip, redis_server):
    model = yolox_like_model(tmp_path / "yolox_like.onnx")
    for fmt, ok in (("yolox", True), ("yolov8", False)):
        path = write_pipeline(tmp_path / f"{fmt}.yaml",
                              pipeline_text(demo_clip, model, f"  format: {fmt}\n"))  # fmt: skip
        result = run_cli("validate", str(path))
        if ok:
            assert result.returncode == 0, result.stderr
            continue
        says = "model.format yolov8: its output cannot be that family's (scores from"
        assert_one_line_error(result, says)
        assert_one_line_error(run_cli("run", str(path), "--redis-url", redis_server.url), says)


def test_an_ffmpeg_option_ffmpeg_does_not_know_is_warned_about(tmp_path, demo_clip, demo_model):
    text = pipeline_text(demo_clip, demo_model).replace(
        "uri: '", "ffmpeg_options: {stimeout: 5000000, probesize: 100000, threads: 2}, uri: '"
    )
    result = run_cli("validate", str(write_pipeline(tmp_path / "p.yaml", text)))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "ffmpeg_options" in line]
    assert len(warnings) == 1, result.stderr  # probesize (a demuxer's), threads (a decoder's)
    assert "sources[0].ffmpeg_options: FFmpeg has no option 'stimeout'" in warnings[0]
