"""ONNX Runtime sessions with execution providers tried in the order asked.

A GPU provider whose libraries are missing is skipped before ONNX Runtime sees it,
with one warning that names the missing library, instead of ONNX Runtime's own
multi-line error and fallback messages. The CPU provider is always the last resort.

`provider_options` turns the pipeline's GPU settings into each provider's options
(TensorRT's fp16 and engine cache, the device); it is pure, so it is tested without a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from streamer.errors import ModelError
from streamer.models import openvino

log = logging.getLogger(__name__)

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": openvino.PROVIDER_NAME,  # OpenVINO's runtime, not an ONNX Runtime provider
    "cpu": "CPUExecutionProvider",
}
SHORT_NAMES = {name: short for short, name in PROVIDERS.items()}
# The providers whose session runs on an NVIDIA GPU.
GPU_PROVIDERS = frozenset({PROVIDERS["tensorrt"], PROVIDERS["cuda"]})
# The shared library behind each GPU provider in onnxruntime-gpu's wheel. Loading it
# ourselves tells whether its CUDA/cuDNN/TensorRT dependencies are present.
_PROVIDER_LIBRARIES = {
    "tensorrt": "libonnxruntime_providers_tensorrt.so",
    "cuda": "libonnxruntime_providers_cuda.so",
}

ProviderOptions = dict[str, str]

# Quiet ONNX Runtime's own logging (warnings about provider fallbacks and node
# placement); failures still raise exceptions, which we report ourselves.
ort.set_default_logger_severity(3)


@dataclass(frozen=True)
class GpuSettings:
    """How the accelerator providers run a model (the pipeline's model.device, fp16,
    engine_cache, openvino_device)."""

    device: int = 0
    fp16: bool = False
    engine_cache: Path | None = None
    """TensorRT's engine cache folder; None: `default_engine_cache()`."""
    openvino_device: str = "CPU"


def default_engine_cache() -> Path:
    """Where TensorRT engines are kept unless the pipeline names a folder: the user's cache
    folder, which survives restarts (building an engine takes from seconds to minutes)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamer" / "tensorrt"


def provider_options(
    requested: Sequence[str], settings: GpuSettings = GpuSettings()
) -> list[tuple[str, ProviderOptions]]:
    """ONNX Runtime's (provider name, options) for each requested provider, in order, each
    once, with CPU last (`openvino` is not ONNX Runtime's: left out). Pure: it neither
    looks at the machine nor creates folders."""
    cache = settings.engine_cache or default_engine_cache()
    names = [n for n in dict.fromkeys(requested) if n not in ("cpu", "openvino")] + ["cpu"]
    chosen: list[tuple[str, ProviderOptions]] = []
    for name in names:
        options: ProviderOptions = {}
        if name == "tensorrt":
            options = {
                "device_id": str(settings.device),
                "trt_fp16_enable": "1" if settings.fp16 else "0",
                "trt_engine_cache_enable": "1",
                # ONNX Runtime's engine file names do not tell an fp16 build of a model
                # from an fp32 one: a folder each, so switching fp16 never loads the other.
                "trt_engine_cache_path": str(cache / ("fp16" if settings.fp16 else "fp32")),
                # Layer timings do not depend on the precision asked for: shared by both.
                "trt_timing_cache_enable": "1",
                "trt_timing_cache_path": str(cache),
            }
        elif name == "cuda":
            options = {
                "device_id": str(settings.device),
                # Batches come in every size up to the batch limit, and EXHAUSTIVE (ONNX
                # Runtime's default) benchmarks every convolution algorithm at the first
                # batch of each new size: a stall of up to seconds in the middle of a live
                # stream. HEURISTIC takes cuDNN's own choice at once.
                "cudnn_conv_algo_search": "HEURISTIC",
            }
        chosen.append((PROVIDERS[name], options))
    return chosen


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from pip's nvidia-* packages (onnxruntime-gpu[cuda,cudnn]),
    which are not on the dynamic loader's path, so that the providers' libraries find them.
    ONNX Runtime prints what it could not load; whatever is missing is named by the
    provider check after this, so its output, and a library that fails to load here,
    are left to that check."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is None:
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(OSError):
        preload()


@functools.cache
def _why_unusable(provider: str, openvino_device: str = "CPU") -> str | None:
    """None when the provider can be used here, else the reason it cannot. Asked once per
    process: loading the provider's library is what tells, and the answer cannot change."""
    if provider == "openvino":
        return openvino.why_unusable(openvino_device)
    if PROVIDERS[provider] not in ort.get_available_providers():
        return "not in this onnxruntime build"
    library = _PROVIDER_LIBRARIES.get(provider)
    if library is None:
        return None
    capi = Path(ort.__file__).parent / "capi"
    if not (capi / library).exists():
        return None  # another packaging of onnxruntime; let it try
    _preload_cuda_libraries()
    try:
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(capi / library))
    except OSError as exc:
        return str(exc).split(": ", 1)[-1] if library in str(exc) else str(exc)
    return None


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerPlan:
    workers: int  # sessions that run batches at the same time
    threads: int | None  # ONNX Runtime intra-op threads of each; None: its default


def plan_workers(provider: str, workers: int | None, threads: int | None, cores: int) -> WorkerPlan:
    """How many sessions run batches at once, and the threads each has.

    On the CPU, by default, two sessions that each have half the cores: within one model
    call ONNX Runtime's threads meet after every operator, and a core taken by decoding
    for a moment stalls all of them, so one session spread over every core leaves cores
    waiting. Two sessions that each run a whole batch keep both busy (YOLOv8n at 384x640,
    batch 4, 2 cores: about 1.1x on ready tensors, 1.25x in the whole offline pipeline).
    On a GPU, one session: the device is shared anyway and the CPU has little to do.
    """
    if workers is None:
        workers = 1 if provider in GPU_PROVIDERS or cores < 2 else 2
    if threads is None and workers > 1 and provider not in GPU_PROVIDERS:
        threads = max(1, cores // workers)
    return WorkerPlan(workers, threads)


def first_usable_provider(requested: Sequence[str], openvino_device: str = "CPU") -> str:
    """The provider a model asked for `requested` will run on."""
    return next(
        (PROVIDERS[n] for n in requested if _why_unusable(n, openvino_device) is None),
        PROVIDERS["cpu"],
    )


def choose_providers(requested: Sequence[str], openvino_device: str = "CPU") -> list[str]:
    """Provider names to try, in order, with CPU last; one warning for the skipped."""
    chosen: list[str] = []
    skipped: list[str] = []
    for name in requested:
        reason = _why_unusable(name, openvino_device)
        if reason is None:
            chosen.append(PROVIDERS[name])
        elif name != "cpu":
            skipped.append(f"{name}: {reason}")
    if PROVIDERS["cpu"] not in chosen:
        chosen.append(PROVIDERS["cpu"])
    if skipped:
        log.warning(
            "execution provider(s) unavailable, using %s (%s)",
            chosen[0].removesuffix("ExecutionProvider"),
            "; ".join(skipped),
        )
    return chosen


def _with_cache_folders(entries: list[tuple[str, ProviderOptions]]) -> None:
    """Create TensorRT's cache folders; when that fails, run without the caches (with one
    warning) rather than not at all: they only save the engine build at the next start."""
    for name, options in entries:
        if name != PROVIDERS["tensorrt"]:
            continue
        folder = Path(options["trt_engine_cache_path"])
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning(
                "TensorRT engine cache %s cannot be created (%s): engines are built at every start",
                folder,
                exc.strerror or exc,
            )
            options["trt_engine_cache_enable"] = options["trt_timing_cache_enable"] = "0"


def open_session(
    path: Path,
    providers: Sequence[str],
    threads: int | None,
    gpu: GpuSettings = GpuSettings(),
) -> ort.InferenceSession:
    """An inference session for the model at `path`; ModelError when it cannot be loaded."""
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    usable = set(choose_providers(providers, gpu.openvino_device))
    entries = [entry for entry in provider_options(providers, gpu) if entry[0] in usable]
    _with_cache_folders(entries)
    try:
        return ort.InferenceSession(
            os.fspath(path),
            options,
            providers=[name for name, _ in entries],
            provider_options=[opts for _, opts in entries],
        )
    except Exception as exc:  # ORT raises its own exception types for every kind of bad file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a usable ONNX model ({first_line})") from exc
