"""The `openvino` provider: a real model compiled and run by OpenVINO's runtime (installed
with the test extras), beside ONNX Runtime's results; and the clean fallback to ONNX
Runtime's CPU provider when the package or the device is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.config import parse_config
from streamer.errors import ConfigError, ModelError
from streamer.models import Model
from streamer.models.openvino import PROVIDER_NAME, why_unusable
from streamer.runtime.messages import Frame
from streamer.stages.preprocess import prepare
from tests.conftest import DEMO_CLIP, DEMO_CONFIDENCE, DEMO_MODEL, REPO, run_cli

pytest.importorskip("openvino", reason="the test extras install openvino")


def demo_batch(model: Model, n: int = 4) -> np.ndarray:
    tensors = []
    with av.open(str(DEMO_CLIP)) as container:
        for i, picture in enumerate(container.decode(video=0)):
            if i == n:
                break
            frame = Frame("cam", i, None, 0, 0.0, None, picture, i / 15)
            tensors.append(prepare(frame, model.spec, model.input_hw_for((360, 640))).tensor)
    return np.stack(tensors)


def test_openvino_runs_the_demo_model_as_onnx_runtime_does(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    on_openvino = Model.load(DEMO_MODEL, providers=("openvino", "cpu"))
    on_cpu = Model.load(DEMO_MODEL, providers=("cpu",))
    assert on_openvino.providers == [PROVIDER_NAME]
    assert on_openvino.workers == on_cpu.workers
    batch = demo_batch(on_cpu)
    ours, theirs = on_openvino.run(batch), on_cpu.run(batch)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)
    # The compiled model is cached for the next start.
    assert any((tmp_path / "streamer" / "openvino").iterdir())


def test_a_pipeline_on_openvino_gives_the_events_onnx_runtime_gives(tmp_path):
    def run(providers: str) -> tuple[list[str], dict]:
        pipeline = tmp_path / f"{providers}.yaml"
        pipeline.write_text(
            f"name: ov\nsources:\n  - {{id: cam1, uri: '{DEMO_CLIP}'}}\n"
            f"model:\n  path: '{DEMO_MODEL}'\n{DEMO_CONFIDENCE}  providers: [{providers}]\n"
            "events: {emit: [object_appeared, object_left]}\nsink: none\n"
        )
        stats_file = tmp_path / f"{providers}.json"
        result = run_cli("run", str(pipeline), "--stats-json", str(stats_file))
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        return [e["type"] for e in lines if e["type"] != "source_status"], json.loads(
            stats_file.read_text()
        )

    ov_events, ov_stats = run("openvino")
    cpu_events, cpu_stats = run("cpu")
    assert ov_stats["providers"] == [PROVIDER_NAME]
    assert cpu_stats["providers"] == ["CPUExecutionProvider"]
    assert ov_events == cpu_events and len(ov_events) >= 2


def fallback_run(*code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "\n".join(code)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=os.environ.copy(),
    )  # fmt: skip


def test_without_the_package_the_provider_falls_back_to_the_cpu_with_one_warning():
    """The package made unimportable, as on a machine without it."""
    result = fallback_run(
        "import logging, sys",
        "sys.modules['openvino'] = None",
        "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')",
        "from pathlib import Path",
        "from streamer.models import Model",
        f"model = Model.load(Path({str(DEMO_MODEL)!r}), providers=('openvino', 'cpu'))",
        "print(model.providers)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['CPUExecutionProvider']"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert warnings == [
        "WARNING execution provider(s) unavailable, using CPU (openvino: the openvino package "
        "is not installed (pip install 'streamer[openvino]'))"
    ]


def test_a_device_this_machine_lacks_falls_back_to_the_cpu(caplog):
    missing = next(d for d in ("NPU", "GPU.7") if why_unusable(d) is not None)
    model = Model.load(DEMO_MODEL, providers=("openvino", "cpu"), openvino_device=missing)
    assert model.providers == ["CPUExecutionProvider"]
    assert f"no OpenVINO {missing} device here" in caplog.text


def test_openvino_in_the_pipeline_file():
    def model(**extra: object) -> dict:
        config = parse_config({"name": "p", "sources": [{"id": "a", "uri": "a.mp4"}],
                               "model": {"path": "m.onnx", **extra}}, "p.yaml")  # fmt: skip
        return config.model.model_dump(mode="json")

    assert model()["providers"] == ["tensorrt", "cuda", "cpu"]  # openvino only when listed
    assert model(providers=["openvino"], openvino_device="GPU.1")["openvino_device"] == "GPU.1"
    with pytest.raises(ConfigError, match="openvino_device"):
        model(providers=["openvino"], openvino_device="TPU")


def test_a_file_openvino_cannot_read_is_a_model_error(tmp_path: Path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"bad\.onnx: not a usable ONNX model"):
        Model.load(bad, providers=("openvino", "cpu"))
