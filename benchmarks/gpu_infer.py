"""GPU check: inference alone per execution provider, and decoding with and without NVDEC.

Run by benchmarks/gpu_check.sh on a GPU machine (it works anywhere: providers that cannot
run there are recorded with the reason and the CPU figures they fell back to). For each of
CPU, CUDA (as the pipeline runs it: batches from CPU memory, outputs back to it; and with
the input and outputs kept on the GPU, IO binding, which shows what the copies cost and
what preparing frames on the GPU could save), TensorRT fp32 and TensorRT fp16, at batch
1 and 8 on the
pipeline's input shape for a 1280x720 frame: frames per second, milliseconds per batch,
the providers really in use and how long loading took (TensorRT builds its engine then;
a second load shows the engine cache at work). Then the clip is decoded in software and
with `hwaccel: cuda`, and the first frame of each is prepared as the pipeline would.

    python -m benchmarks.gpu_infer --model ../shared/assets/models/yolov8n.onnx \\
        --clip ../shared/assets/videos/one-by-one-person-detection.mp4 --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import onnxruntime as ort
from av.codec.hwaccel import HWAccel

from streamer.config.schema import HwAccel, SourceConfig
from streamer.models import Model
from streamer.models.sessions import GpuSettings, open_session
from streamer.runtime.messages import Frame
from streamer.sources.opening import choose_hwaccel
from streamer.stages.preprocess import prepare

FRAME_HW = (720, 1280)
# (label, providers, fp16, tensors kept on the GPU): each runs at every batch size.
RUNS: list[tuple[str, tuple[str, ...], bool, bool]] = [
    ("cpu", ("cpu",), False, False),
    ("cuda", ("cuda",), False, False),
    ("cuda, tensors on the GPU", ("cuda",), False, True),
    ("tensorrt fp32", ("tensorrt",), False, False),
    ("tensorrt fp16", ("tensorrt",), True, False),
]


def timed(run: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Mean seconds per call of `run` over about `seconds` (after two untimed calls)."""
    run()
    run()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < 5:
        run()
        calls += 1
    return (time.perf_counter() - started) / calls, calls


def resident_run(
    model_path: Path, providers: tuple[str, ...], tensor: np.ndarray
) -> Callable[[], object]:
    """One model call with its input copied to the GPU once and its outputs left there."""
    session = open_session(model_path, providers, None, GpuSettings())
    binding = session.io_binding()
    value = ort.OrtValue.ortvalue_from_numpy(tensor, "cuda", 0)
    binding.bind_ortvalue_input(session.get_inputs()[0].name, value)
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda")
    return functools.partial(session.run_with_iobinding, binding)


def inference(
    model_path: Path, batches: list[int], seconds: float, cache: Path
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for label, providers, fp16, on_gpu in RUNS:
        for batch in batches:
            row: dict[str, Any] = {"run": label, "batch": batch, "fp16": fp16}
            rows.append(row)
            try:
                started = time.perf_counter()
                model = Model.load(
                    model_path, providers=providers, fp16=fp16, engine_cache=cache, workers=1
                )
                row["load_s"] = round(time.perf_counter() - started, 2)
                row["providers_in_use"] = model.providers
                hw = model.input_hw_for(FRAME_HW)
                tensor = np.random.default_rng(0).random((batch, 3, *hw), np.float32)
                row["input"] = list(tensor.shape)
                row["tensors_on_gpu"] = on_gpu and model.providers[0] != "CPUExecutionProvider"
                if row["tensors_on_gpu"]:
                    per_call, calls = timed(resident_run(model_path, providers, tensor), seconds)
                else:
                    per_call, calls = timed(functools.partial(model.run, tensor), seconds)
                if providers != ("cpu",) and model.providers[0] == "CPUExecutionProvider":
                    row["note"] = "fell back to the CPU: see the warning in the log"
                row.update(
                    ms_per_batch=round(per_call * 1000, 3),
                    fps=round(batch / per_call, 1),
                    calls=calls,
                )
                if label.startswith("tensorrt"):  # a second load reads the cached engine
                    started = time.perf_counter()
                    Model.load(model_path, providers=providers, fp16=fp16, engine_cache=cache)
                    row["load_again_s"] = round(time.perf_counter() - started, 2)
            except Exception as exc:  # noqa: BLE001 - record it and go on with the next run
                row["error"] = f"{type(exc).__name__}: {exc}"[:500]
            print(json.dumps(row), flush=True)
    return rows


def decoding(clip: Path, model_path: Path) -> list[dict[str, Any]]:
    """Every frame of the clip decoded in software and on CUDA, and the first one of each
    prepared as the model's input the way preprocessing does it."""
    model = Model.load(model_path, providers=("cpu",))
    rows: list[dict[str, Any]] = []
    for wanted in (HwAccel.NONE, HwAccel.CUDA):
        row: dict[str, Any] = {"hwaccel": str(wanted)}
        rows.append(row)
        try:
            device = choose_hwaccel(
                SourceConfig(id=f"decode-{wanted}", uri=str(clip), hwaccel=wanted)
            )
            row["device"] = device
            hwaccel = HWAccel(device, allow_software_fallback=True) if device else None
            started, frames = time.perf_counter(), 0
            with av.open(str(clip), hwaccel=hwaccel) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                row["codec"] = stream.codec_context.name
                row["is_hwaccel"] = bool(stream.codec_context.is_hwaccel)
                for frame in container.decode(stream):
                    if frames == 0:
                        row["frame_format"] = frame.format.name
                        row["frame_size"] = [frame.width, frame.height]
                        hw = model.input_hw_for((frame.height, frame.width))
                        picture = Frame("decode", 0, None, 0, 0.0, None, frame, 0.0)
                        row["prepared_shape"] = list(prepare(picture, model.spec, hw).tensor.shape)
                    frames += 1
            wall = time.perf_counter() - started
            row.update(frames=frames, fps=round(frames / wall, 1))
        except Exception as exc:  # noqa: BLE001 - record it and go on
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed per run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        results = {
            "onnxruntime": ort.__version__,
            "available_providers": ort.get_available_providers(),
            "pyav": av.__version__,
            "hwdevices_available": list(av.codec.hwaccel.hwdevices_available()),
            "inference": inference(args.model.resolve(), args.batches, args.seconds, Path(cache)),
            "decoding": decoding(args.clip.resolve(), args.model.resolve()),
        }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
