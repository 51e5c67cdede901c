"""ONNX Runtime sessions with execution providers tried in the order asked.

A GPU provider whose libraries are missing is skipped before ONNX Runtime sees it,
with one warning that names the missing library, instead of ONNX Runtime's own
multi-line error and fallback messages. The CPU provider is always the last resort.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import onnxruntime as ort

from streamer.errors import ModelError

log = logging.getLogger(__name__)

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
# The shared library behind each GPU provider in onnxruntime-gpu's wheel. Loading it
# ourselves tells whether its CUDA/cuDNN/TensorRT dependencies are present.
_PROVIDER_LIBRARIES = {
    "tensorrt": "libonnxruntime_providers_tensorrt.so",
    "cuda": "libonnxruntime_providers_cuda.so",
}

# Quiet ONNX Runtime's own logging (warnings about provider fallbacks and node
# placement); failures still raise exceptions, which we report ourselves.
ort.set_default_logger_severity(3)


def _why_unusable(provider: str) -> str | None:
    """None when the provider can be used here, else the reason it cannot."""
    if PROVIDERS[provider] not in ort.get_available_providers():
        return "not in this onnxruntime build"
    library = _PROVIDER_LIBRARIES.get(provider)
    if library is None:
        return None
    capi = Path(ort.__file__).parent / "capi"
    if not (capi / library).exists():
        return None  # another packaging of onnxruntime; let it try
    try:
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(capi / library))
    except OSError as exc:
        return str(exc).split(": ", 1)[-1] if library in str(exc) else str(exc)
    return None


def choose_providers(requested: list[str]) -> list[str]:
    """ONNX Runtime provider names to try, in order, with CPU last; one warning for the skipped."""
    chosen: list[str] = []
    skipped: list[str] = []
    for name in requested:
        reason = _why_unusable(name)
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


def open_session(path: Path, providers: list[str], threads: int | None) -> ort.InferenceSession:
    """An inference session for the model at `path`; ModelError when it cannot be loaded."""
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=choose_providers(providers))
    except Exception as exc:  # ORT raises its own exception types for every kind of bad file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a usable ONNX model ({first_line})") from exc
