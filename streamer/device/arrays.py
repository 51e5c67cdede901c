"""The array module a batch is prepared with, and the device ONNX Runtime reads it from.

CuPy on an NVIDIA GPU (`pip install 'streamer[gpu]'`); NumPy on the CPU, where the tests
run the same code. Whether CuPy can run here is asked once per device: importing it,
finding the device, and compiling one small kernel (which needs NVRTC) all must work.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

GPU_EXTRA = "pip install 'streamer[gpu]'"


@dataclass(frozen=True)
class ArrayDevice:
    """Where prepared batches live: an array module and ONNX Runtime's name for its memory."""

    xp: ModuleType
    ort_device: str  # ONNX Runtime's device type: "cuda" or "cpu"
    device_id: int

    def pointer(self, array: Any) -> int:
        """The address of `array`'s first element, for ONNX Runtime's IO binding."""
        if self.xp is np:
            return int(array.ctypes.data)
        return int(array.data.ptr)

    def synchronize(self) -> None:
        """Wait for the work queued on this device's current stream: ONNX Runtime runs the
        model on a stream of its own, which must not read a batch still being written."""
        if self.xp is not np:
            self.xp.cuda.get_current_stream().synchronize()

    def use(self) -> None:
        """Make this device the calling thread's current one (a thread's default is 0)."""
        if self.xp is not np:
            self.xp.cuda.Device(self.device_id).use()


HOST = ArrayDevice(np, "cpu", 0)


@functools.cache
def why_no_cuda(device_id: int) -> str | None:
    """None when CuPy can prepare batches on CUDA device `device_id`, else why not."""
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as exc:
        return f"CuPy is not installed ({GPU_EXTRA}): {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if device_id >= count:
            return f"no CUDA device {device_id} ({count} found)"
        with cupy.cuda.Device(device_id):
            (cupy.arange(4, dtype=cupy.float32) * 2).sum().item()  # compiles a kernel
    except Exception as exc:  # noqa: BLE001 - CuPy has its own errors for a missing driver, NVRTC
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"CuPy cannot run on CUDA device {device_id}: {first_line}"
    return None


def cuda_device(device_id: int) -> ArrayDevice:
    """CUDA device `device_id` through CuPy; call only when `why_no_cuda` said yes."""
    return ArrayDevice(importlib.import_module("cupy"), "cuda", device_id)


def choose_array_device(
    prepare_on: str,
    model_on_gpu: bool,
    device_id: int,
    why_not: Callable[[int], str | None] = why_no_cuda,
) -> ArrayDevice | None:
    """Where batches are prepared for `model.prepare_on` ("auto", "cpu" or "gpu"): the
    model's GPU, or None for the CPU path. One warning when the GPU was asked for, or
    would have been chosen, and cannot be used."""
    if prepare_on == "cpu":
        return None
    if not model_on_gpu:
        if prepare_on == "gpu":
            log.warning(
                "model.prepare_on: gpu needs the model on a GPU (cuda or tensorrt), "
                "and it runs on the CPU: frames are prepared on the CPU"
            )
        return None
    reason = why_not(device_id)
    if reason is not None:
        log.warning("frames are prepared on the CPU, not on the model's GPU: %s", reason)
        return None
    return cuda_device(device_id)
