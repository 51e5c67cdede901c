"""The `openvino` provider: models run by Intel's OpenVINO runtime (CPUs, and Intel iGPUs
with `model.openvino_device: GPU`).

OpenVINO's own runtime rather than ONNX Runtime's OpenVINO execution provider: the
provider comes in `onnxruntime-openvino`, a build of ONNX Runtime that replaces the
installed one (and with it the CUDA and TensorRT providers), while the runtime installs
beside any ONNX Runtime (`pip install 'streamer[openvino]'`). On this project's machine
both ran YOLOv8n and YOLOX-nano within 7 % of each other and of ONNX Runtime's CPU
provider (docs/performance.md, "OpenVINO").

A model is compiled once for all workers, with one stream per worker, and each worker
has an infer request of its own; compiled models are cached (OpenVINO's `CACHE_DIR`), so
a later start loads in a fraction of the compile time.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamer.errors import ModelError

log = logging.getLogger(__name__)

PROVIDER_NAME = "OpenVINO"  # as stats and logs name the provider in use


def default_cache() -> Path:
    """Where compiled models are kept: the user's cache folder, which survives restarts."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamer" / "openvino"


@functools.cache
def why_unusable(device: str) -> str | None:
    """None when OpenVINO can run models on `device` here, else the reason it cannot."""
    try:
        ov = importlib.import_module("openvino")
    except ImportError:
        return "the openvino package is not installed (pip install 'streamer[openvino]')"
    devices = ov.Core().available_devices
    if not any(d == device or d.startswith(f"{device}.") for d in devices):
        return f"no OpenVINO {device} device here (found: {', '.join(devices) or 'none'})"
    return None


class _Output:
    def __init__(self, name: str) -> None:
        self.name = name


class OpenVinoSession:
    """One infer request of a compiled model, behind the calls `Model` makes of an ONNX
    Runtime session. A request serves one call at a time: `Model` hands each worker's
    session to one thread at once."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._request = compiled.create_infer_request()

    def run(self, output_names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self._request.infer(feeds)
        return [np.asarray(results[self._compiled.output(name)]) for name in output_names]

    def get_outputs(self) -> list[_Output]:
        return [_Output(output.get_any_name()) for output in self._compiled.outputs]

    def get_providers(self) -> list[str]:
        return [PROVIDER_NAME]


def open_sessions(
    path: Path, workers: int, threads: int | None, device: str, cache: Path | None = None
) -> list[OpenVinoSession]:
    """`workers` sessions of the model at `path`, compiled once for `device`."""
    ov = importlib.import_module("openvino")
    folder = cache or default_cache()
    config: dict[str, str] = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(workers)}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads * workers)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(folder)
    except OSError as exc:
        log.warning("OpenVINO cache %s cannot be created (%s): the model is compiled at every "
                    "start", folder, exc.strerror or exc)  # fmt: skip
    try:
        compiled = ov.Core().compile_model(os.fspath(path), device, config)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "RuntimeError"
        raise ModelError(f"{path}: OpenVINO cannot compile it for {device} ({first_line})") from exc
    return [OpenVinoSession(compiled) for _ in range(workers)]
