"""Batches prepared where the frames are (`model.prepare_on: gpu`), checked on the CPU:
the same array code runs on NumPy here and on CuPy on a GPU (benchmarks/gpu_check.sh
runs it there), and ONNX Runtime's IO binding is the same calls with host memory."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.analytics.boxes import letterbox_geometry, match_by_iou
from streamer.config import load_config
from streamer.device.arrays import HOST, ArrayDevice, choose_array_device, why_no_cuda
from streamer.device.binding import BoundSession
from streamer.device.prepare import BatchPreparer, blank_planes, planes_of
from streamer.device.resize import resize_weights, yuv_to_rgb
from streamer.events.event import Event, EventType
from streamer.models import Model
from streamer.models.sessions import open_session
from streamer.pipeline.build import build, gpu_of
from streamer.pipeline.lifecycle import Pipeline
from streamer.runtime.clock import SYSTEM_CLOCK
from streamer.runtime.messages import Frame, OnDevice
from streamer.sources.opening import hardware_decoding
from streamer.stages.inference import stacked
from streamer.stages.preprocess import prepare, tensor_of
from tests.conftest import DEMO_CLIP, DEMO_CONFIDENCE, one_source_pipeline

pytestmark = pytest.mark.timeout(120)


def decoded(clip: Path, every: int = 30, count: int = 6) -> list[av.VideoFrame]:
    with av.open(str(clip)) as container:
        pictures = [p for i, p in enumerate(container.decode(video=0)) if i % every == 0]
    return pictures[:count]


def as_frame(picture: av.VideoFrame, index: int = 0, source: str = "cam1") -> Frame:
    return Frame(source, index, None, 0, 0.0, None, picture, 0.0)


@pytest.fixture(scope="module")
def model(demo_model: Path) -> Model:
    return Model.load(demo_model, providers=("cpu",), workers=1)


@pytest.fixture(scope="module")
def host_model(demo_model: Path) -> Model:
    """The demo model with batches prepared by the GPU path's code, on the CPU."""
    session = open_session(demo_model, ["cpu"], None)
    plain = Model.load(demo_model, providers=("cpu",), workers=1)
    return Model(demo_model, [session], plain.spec, array_device=HOST)


@pytest.mark.parametrize(("src", "dst"), [(720, 384), (1280, 640), (360, 192), (100, 300)])
def test_resize_weights_rows_sum_to_one_and_keep_the_picture_centred(src, dst):
    weights = resize_weights(src, dst)
    assert weights.shape == (dst, src)
    assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    positions = weights @ np.arange(src)
    expected = (np.arange(dst) + 0.5) * src / dst - 0.5
    inside = slice(dst // 8, dst - dst // 8)  # away from the edges, which pull inwards
    assert np.allclose(positions[inside], expected[inside], atol=0.05)  # of a pixel
    assert not weights.flags.writeable


def test_yuv_to_rgb_gives_grey_for_neutral_chroma_and_the_range_ends():
    for colorspace in (1, 2, 6):
        limited, full = yuv_to_rgb(colorspace, 1), yuv_to_rgb(colorspace, 2)
        assert (16 - limited.y_offset) * limited.gain == 0
        assert (235 - limited.y_offset) * limited.gain == pytest.approx(255)
        assert (255 - full.y_offset) * full.gain == 255
    bt709, bt601 = yuv_to_rgb(1, 1), yuv_to_rgb(2, 1)
    assert bt709.r_v == pytest.approx(1.7927, abs=1e-4)
    assert bt601.r_v == pytest.approx(1.5960, abs=1e-4)


@pytest.mark.parametrize("layout", ["yuv420p", "nv12"])
def test_the_gpu_path_prepares_what_the_cpu_path_does(model, layout):
    """The demo clip's frames, one batch of six: the tensors the CPU path makes, to within
    rounding (mean under half a grey level; the largest differences at sharp colour
    edges, where chroma is placed differently)."""
    pictures = [p.reformat(format=layout) if layout == "nv12" else p for p in decoded(DEMO_CLIP)]
    hw = model.input_hw_for((360, 640))
    expected = np.stack([tensor_of(as_frame(p), model.spec, hw) for p in pictures])
    out = np.empty((8, 3, *hw), np.float32)
    planes = [planes_of(p, np) for p in pictures]
    lb = letterbox_geometry((360, 640), hw, model.spec.centered)
    BatchPreparer(np).into(out, planes, [lb] * len(planes), model.spec)  # type: ignore[arg-type]
    grey_levels = np.abs(out[: len(pictures)] - expected) / model.spec.scale
    assert grey_levels.mean() < 0.5
    assert np.percentile(grey_levels, 99) <= 4
    pad = out[:, :, : lb.pad_y] if lb.pad_y else out[:, :, :, : lb.pad_x]
    assert np.all(pad[: len(pictures)] == np.float32(114 * model.spec.scale))


def test_a_batch_mixes_frame_sizes_and_tensors_prepared_on_the_cpu(model):
    """Two sources of different sizes letterboxed into one input size (a model of fixed
    input), and a frame whose layout the GPU path does not read (its tensor prepared on
    the CPU and copied into its slot), each land in their own slot."""
    small = decoded(DEMO_CLIP, count=1)[0]
    large = small.reformat(width=1280, height=720)
    bgr = small.reformat(format="rgb24")  # not 4:2:0: prepared on the CPU
    hw = (320, 320)
    pictures = [small, large, bgr]
    frames = [as_frame(p, i) for i, p in enumerate(pictures)]
    prepared = [prepare(f, model.spec, hw, device=HOST) for f in frames]
    assert [type(p.tensor) for p in prepared] == [OnDevice, OnDevice, np.ndarray]
    out = np.empty((3, 3, *hw), np.float32)
    inputs = [p.tensor.planes if isinstance(p.tensor, OnDevice) else p.tensor for p in prepared]
    BatchPreparer(np).into(out, inputs, [p.letterbox for p in prepared], model.spec)
    for slot, frame in enumerate(frames):
        expected = tensor_of(frame, model.spec, hw)
        assert (np.abs(out[slot] - expected) / model.spec.scale).mean() < 1.0, slot


def test_io_binding_reads_the_batch_in_place_and_reuses_its_buffer(model, host_model):
    pictures = decoded(DEMO_CLIP, count=4)
    hw = model.input_hw_for((360, 640))
    session = open_session(host_model.path, ["cpu"], None)
    bound = BoundSession(session, model.spec, HOST)
    lb = letterbox_geometry((360, 640), hw, model.spec.centered)
    planes = [planes_of(p, np) for p in pictures]
    first = bound.run(planes[:2], [lb] * 2, hw)  # type: ignore[arg-type]
    buffer = bound.buffer(hw, 2)
    again = bound.run(planes[2:], [lb] * 2, hw)  # type: ignore[arg-type]
    assert bound.buffer(hw, 2) is buffer  # no new allocation for a batch that fits
    whole = bound.run(planes, [lb] * 4, hw)  # type: ignore[arg-type]
    assert len(bound.buffer(hw, 4)) == 4  # made again, larger, once
    assert np.array_equal(np.concatenate([first, again]), whole)
    # The model's own output for the CPU path's tensors, to within the inputs' rounding.
    expected = model.run(stacked([prepare(as_frame(p), model.spec, hw) for p in pictures]))
    assert whole.shape == expected.shape
    assert np.abs(whole - expected).max() < 0.05 * np.abs(expected).max()


def test_warm_up_prepares_a_blank_batch_and_makes_the_buffer(host_model):
    assert host_model.warm_up(4) > 0
    planes = blank_planes(np, (720, 1280))
    assert planes.hw == (720, 1280)
    assert int(planes.y.max()) == 16 and int(planes.u.min()) == 128


def test_where_batches_are_prepared_and_the_warnings(caplog):
    def never(_: int) -> str:
        return "CuPy is not installed"

    with caplog.at_level(logging.WARNING):
        assert choose_array_device("cpu", True, 0, never) is None
        assert choose_array_device("auto", False, 0, never) is None
        assert not caplog.records  # nothing asked for that could not be
        assert choose_array_device("gpu", False, 0, never) is None
        assert choose_array_device("auto", True, 0, never) is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "prepare_on: gpu needs the model on a GPU" in messages[0]
    assert "prepared on the CPU, not on the model's GPU: CuPy is not installed" in messages[1]


def test_this_machine_names_why_it_cannot_prepare_on_a_gpu():
    reason = why_no_cuda(0)
    assert reason is not None
    assert "CuPy" in reason


def test_prepare_on_is_read_and_checked(tmp_path, demo_model):
    path = one_source_pipeline(tmp_path, "p", DEMO_CLIP, demo_model, extra="  prepare_on: gpu\n")
    assert str(load_config(path).model.prepare_on) == "gpu"
    bad = one_source_pipeline(tmp_path, "q", DEMO_CLIP, demo_model, extra="  prepare_on: tpu\n")
    with pytest.raises(Exception, match="prepare_on"):
        load_config(bad)


def run_demo(tmp_path: Path, name: str, model: Model, demo_model: Path) -> list[Event]:
    path = one_source_pipeline(
        tmp_path, name, DEMO_CLIP, demo_model,
        extra=DEMO_CONFIDENCE + "  batch: {max_size: 4, max_wait_ms: 10}\nsink: none\n",
        emit="[detections, object_appeared, object_left]",
    )  # fmt: skip
    config = load_config(path)
    events: list[Event] = []
    built = build(config, redis_url=None, max_frames=None, on_event=events.append,
                  clock=SYSTEM_CLOCK, model=model)  # fmt: skip
    Pipeline(config.name, built.run_id, built.parts).run()
    return events


def test_a_pipeline_prepared_on_the_device_path_reports_what_the_cpu_path_does(
    tmp_path, model, host_model, demo_model
):
    """The whole demo run through preprocess (planes only), the inference stage (batches
    prepared into the session's buffer, IO binding) and postprocess: the same boxes
    (same class, IoU >= 0.9) on every frame, and the same objects."""
    cpu = run_demo(tmp_path, "cpu", model, demo_model)
    device = run_demo(tmp_path, "device", host_model, demo_model)

    def frames(events: list[Event]) -> list[Event]:
        return [e for e in events if e.type is EventType.DETECTIONS]

    boxes = matched = 0
    for a, b in zip(frames(cpu), frames(device), strict=True):
        assert a.frame is not None and b.frame is not None
        assert a.frame.index == b.frame.index
        xyxy = [np.array([o.bbox for o in e.objects], np.float32).reshape(-1, 4) for e in (a, b)]
        classes = [np.array([o.label for o in e.objects]) for e in (a, b)]
        boxes += len(a.objects)
        matched += len(match_by_iou(xyxy[0], classes[0], xyxy[1], classes[1], 0.9))
    assert len(frames(cpu)) == 300
    assert boxes > 300
    assert matched >= 0.98 * boxes
    lifecycle = [(e.type, e.source) for e in cpu if e.type is not EventType.DETECTIONS]
    assert [(e.type, e.source) for e in device if e.type is not EventType.DETECTIONS] == lifecycle


def test_nvdec_frames_stay_on_the_gpu_only_where_batches_are_prepared_there():
    kept = hardware_decoding("cuda", 1)
    assert kept is not None and kept.is_hw_owned and kept.device_id == 1
    downloaded = hardware_decoding("cuda", None)
    assert downloaded is not None and not downloaded.is_hw_owned
    vaapi = hardware_decoding("vaapi", 0)  # only CUDA frames are read through DLPack
    assert vaapi is not None and not vaapi.is_hw_owned
    assert hardware_decoding(None, 0) is None


def test_sources_keep_frames_on_the_gpu_of_the_model_that_prepares_there(model, host_model):
    assert gpu_of(model) is None
    assert gpu_of(host_model) is None  # host memory: frames are downloaded as before
    session = open_session(host_model.path, ["cpu"], None)
    on_gpu = Model(host_model.path, [session], host_model.spec, ArrayDevice(np, "cuda", 2))
    assert gpu_of(on_gpu) == 2


@pytest.mark.parametrize("providers", ["[cpu]", "[cuda, cpu]"])
def test_prepare_on_gpu_without_a_gpu_warns_once_and_runs_on_the_cpu(
    tmp_path, demo_model, caplog, providers
):
    """This machine has no GPU (and no CuPy): `prepare_on: gpu` with hardware decoding
    asked for too runs the CPU path, saying so once, and the run is whole."""
    path = one_source_pipeline(
        tmp_path, "fallback", DEMO_CLIP, demo_model, source_extra=", hwaccel: cuda",
        extra=f"  providers: {providers}\n  prepare_on: gpu\n{DEMO_CONFIDENCE}sink: none\n",
    )  # fmt: skip
    events: list[Event] = []
    with caplog.at_level(logging.WARNING):
        pipeline = Pipeline.from_file(path, max_frames=30, on_event=events.append)
        pipeline.run()
    prepared = [r.getMessage() for r in caplog.records if "prepare_on: gpu" in r.getMessage()]
    assert len(prepared) == 1
    assert "frames are prepared on the CPU" in prepared[0]
    assert pipeline.stats()["frames"]["processed"] == 30
    assert len([e for e in events if e.type is EventType.DETECTIONS]) == 30
