"""The GPU path as far as a CPU machine can check it: provider options, fallback to the CPU,
the batch sizes warmed up, the new config fields, hardware decoding's fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from streamer.config import load_config, parse_config
from streamer.config.schema import SourceConfig
from streamer.errors import ConfigError
from streamer.models import Model, warm_up_sizes
from streamer.models.sessions import (
    GpuSettings,
    _with_cache_folders,
    default_engine_cache,
    provider_options,
)
from streamer.runtime.messages import Frame
from streamer.runtime.queues import Overflow, StageQueue
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Supervisor
from streamer.sources.opening import hwaccel_problem
from streamer.sources.video import SourcePlan, VideoSource
from tests.conftest import DEMO_CLIP

pytestmark = pytest.mark.timeout(120)

CPU = ("CPUExecutionProvider", {})


def test_provider_options_keep_the_order_asked_with_cpu_last_and_each_once():
    names = [name for name, _ in provider_options(["cpu", "cuda", "tensorrt", "cuda"])]
    assert names == ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert provider_options(["cpu"]) == [CPU]
    assert provider_options([]) == [CPU]


def test_tensorrt_options_fp16_engine_cache_and_device(tmp_path):
    cache = tmp_path / "engines"
    (trt, options), cpu = provider_options(["tensorrt"], GpuSettings(2, True, cache))
    assert (trt, cpu) == ("TensorrtExecutionProvider", CPU)
    assert options == {
        "device_id": "2",
        "trt_fp16_enable": "1",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(cache / "fp16"),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(cache),
    }
    (_, fp32), _ = provider_options(["tensorrt"], GpuSettings(engine_cache=cache))
    assert (fp32["trt_fp16_enable"], fp32["trt_engine_cache_path"]) == ("0", str(cache / "fp32"))
    assert not cache.exists()  # pure: the folders are made only when a session opens


def test_cuda_options_name_the_device_and_pick_convolutions_without_benchmarking():
    (cuda, options), _ = provider_options(["cuda", "cpu"], GpuSettings(device=1, fp16=True))
    assert cuda == "CUDAExecutionProvider"
    assert options == {"device_id": "1", "cudnn_conv_algo_search": "HEURISTIC"}


def test_the_default_engine_cache_is_in_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_engine_cache() == tmp_path / "streamer" / "tensorrt"
    (_, options), _ = provider_options(["tensorrt"])
    assert options["trt_engine_cache_path"] == str(tmp_path / "streamer" / "tensorrt" / "fp32")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_engine_cache() == Path.home() / ".cache" / "streamer" / "tensorrt"


def test_an_engine_cache_that_cannot_be_made_turns_the_caches_off_with_one_warning(
    tmp_path, caplog
):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    entries = provider_options(["tensorrt"], GpuSettings(engine_cache=blocker / "engines"))
    with caplog.at_level(logging.WARNING):
        _with_cache_folders(entries)
    options = entries[0][1]
    assert (options["trt_engine_cache_enable"], options["trt_timing_cache_enable"]) == ("0", "0")
    assert [r.getMessage() for r in caplog.records if "engine cache" in r.getMessage()] == [
        f"TensorRT engine cache {blocker / 'engines' / 'fp32'} cannot be created (Not a "
        "directory): engines are built at every start"
    ]
    made = provider_options(["tensorrt"], GpuSettings(engine_cache=tmp_path / "ok"))
    _with_cache_folders(made)
    assert (tmp_path / "ok" / "fp32").is_dir()


def test_unusable_gpu_providers_leave_a_working_cpu_model_and_one_warning(
    demo_model, tmp_path, caplog
):
    """onnxruntime-gpu without CUDA's libraries, or the CPU build: CPU, and one warning that
    says why for each GPU provider (the library that is missing, with onnxruntime-gpu)."""
    with caplog.at_level(logging.WARNING):
        model = Model.load(
            demo_model,
            providers=("tensorrt", "cuda", "cpu"),
            fp16=True,
            engine_cache=tmp_path / "c",
        )
    assert model.providers == ["CPUExecutionProvider"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "using CPU" in warnings[0], warnings
    assert "(tensorrt: " in warnings[0] and "; cuda: " in warnings[0]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert ".so" in warnings[0]  # the missing library, by name
    assert not (tmp_path / "c").exists()  # TensorRT is not used: no cache folder
    # Box and two class rows, for the 8x8 + 4x4 + 2x2 cells of strides 8, 16 and 32.
    assert model.run(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 6, 84)


def test_a_gpu_warms_up_every_batch_size_and_the_cpu_only_the_largest():
    """A batch size's first call on a GPU sets up its kernels: none may happen mid-stream.
    1 and the largest come first, so TensorRT's first engine covers every size."""
    assert warm_up_sizes("CUDAExecutionProvider", None, 4) == [1, 4, 2, 3]
    assert warm_up_sizes("TensorrtExecutionProvider", None, 2) == [1, 2]
    assert warm_up_sizes("CUDAExecutionProvider", None, 1) == [1]
    assert warm_up_sizes("CUDAExecutionProvider", 8, 4) == [4]  # always padded to 8
    assert warm_up_sizes("CPUExecutionProvider", None, 4) == [4]


def test_a_model_run_gives_what_its_session_gives(demo_model):
    model = Model.load(demo_model, providers=("cpu",))
    batch = np.random.default_rng(0).random((2, 3, 96, 160), np.float32)
    session = ort.InferenceSession(str(demo_model), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"images": batch})
    np.testing.assert_allclose(model.run(batch), expected, rtol=1e-4, atol=1e-3)


def config(model: dict[str, object], source: dict[str, object] | None = None) -> object:
    data = {
        "name": "t",
        "sources": [{"id": "cam1", "uri": "a.mp4", **(source or {})}],
        "model": {"path": "m.onnx", **model},
    }
    return parse_config(data, "t.yaml")


def test_the_gpu_fields_default_to_device_0_fp32_and_the_users_cache():
    model = config({}).model  # type: ignore[attr-defined]
    assert (model.device, model.fp16, model.engine_cache) == (0, False, None)
    assert config({}, {}).sources[0].hwaccel == "none"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "source", "message"),
    [
        ({"device": -1}, {}, "t.yaml: model.device: Input should be greater than or equal to 0"),
        ({"device": "gpu0"}, {}, "t.yaml: model.device: Input should be a valid integer"),
        ({"fp16": "half"}, {}, "t.yaml: model.fp16: Input should be a valid boolean"),
        (
            {"fp16": True, "providers": ["cuda", "cpu"]},
            {},
            "t.yaml: model: fp16 applies to the tensorrt provider only",
        ),
        ({"engine_cache": ""}, {}, "t.yaml: model.engine_cache: empty: name a folder"),
        ({"engine_cache": 3}, {}, "t.yaml: model.engine_cache: Input is not a valid path"),
        ({}, {"hwaccel": "nvdec"}, "t.yaml: sources[0].hwaccel: Input should be 'none', 'auto'"),
    ],
)
def test_bad_gpu_fields_give_one_line_naming_the_field(model, source, message):
    with pytest.raises(ConfigError) as info:
        config(model, source)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_the_engine_cache_is_relative_to_the_pipeline_file(tmp_path):
    pipeline = tmp_path / "p.yaml"
    text = {
        "name": "t",
        "sources": [{"id": "cam1", "uri": "a.mp4", "hwaccel": "cuda"}],
        "model": {"path": "m.onnx", "fp16": True, "device": 1, "engine_cache": "trt"},
    }
    pipeline.write_text(yaml.safe_dump(text))
    loaded = load_config(pipeline)
    assert loaded.model.engine_cache == tmp_path / "trt"
    assert (loaded.model.fp16, loaded.model.device) == (True, 1)
    assert loaded.sources[0].hwaccel == "cuda"


def decode_all(source_config: SourceConfig) -> list[Frame]:
    plan = SourcePlan(source_config, realtime=False, max_latency_ms=500, max_frames=None)
    out: StageQueue[Frame] = StageQueue("decoded", 1000, Overflow.BLOCK, lambda i, r: None)
    source = VideoSource(plan, out, RunStats([source_config.id]), Supervisor())
    source.run()
    assert not source.failed
    items = []
    while (item := out.get_nowait()) is not None:
        items.append(item)
    return [item for item in items if isinstance(item, Frame)]


@pytest.mark.integration
@pytest.mark.parametrize("hwaccel", ["cuda", "auto"])
def test_a_missing_hardware_decoder_decodes_every_frame_in_software(hwaccel, caplog):
    if hwaccel_problem("cuda") is None:
        pytest.skip("this machine decodes on CUDA: nothing falls back")
    clip = str(DEMO_CLIP)
    software = decode_all(SourceConfig(id="soft", uri=clip))
    with caplog.at_level(logging.WARNING):
        frames = decode_all(SourceConfig(id="cam7", uri=clip, hwaccel=hwaccel))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        f"source cam7: hardware decoding (hwaccel: {hwaccel}) unavailable, decoding in "
        "software (cuda: "
    ), warnings[0]
    assert len(frames) == len(software) == 300
    assert frames[0].picture.format.name == software[0].picture.format.name
    assert np.array_equal(frames[-1].picture.to_ndarray(), software[-1].picture.to_ndarray())
