"""Detector models: an ONNX Runtime session plus the family's pre- and post-processing rules."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamer.boxes import dynamic_input_hw
from streamer.models.decoders import Candidates, decode_yolov8, decode_yolox
from streamer.models.families import ModelSpec, recognise
from streamer.models.runtime import (
    GPU_PROVIDERS,
    PROVIDERS,
    SHORT_NAMES,
    GpuSettings,
    first_usable_provider,
    open_session,
    plan_workers,
    usable_cores,
)

log = logging.getLogger(__name__)

__all__ = ["Model", "ModelSpec"]


def binding_device(providers: Sequence[str]) -> str | None:
    """Where a session's input is kept between runs: "cuda" when the session runs on an
    NVIDIA GPU, None on the CPU, where ONNX Runtime reads the numpy batch in place and
    binding would only add a copy."""
    return "cuda" if providers and providers[0] in GPU_PROVIDERS else None


class BoundRunner:
    """Runs a session with IO binding: the input lives in one device buffer of the batch's
    shape, reallocated only when the shape changes, and the outputs come back to CPU
    memory, where postprocessing runs. Saves a device allocation and the binding of a
    new input at every call; ONNX Runtime would do both inside `session.run`."""

    def __init__(
        self,
        session: ort.InferenceSession,
        input_name: str,
        output_names: list[str],
        device: str,
        device_id: int = 0,
    ) -> None:
        self._session = session
        self._input_name = input_name
        self._device = device
        self._device_id = device_id
        self._output_names = output_names
        self._binding = session.io_binding()
        self._input: ort.OrtValue | None = None
        self._input_key: tuple[tuple[int, ...], np.dtype[np.generic]] | None = None
        self._bind_outputs()

    def _bind_outputs(self) -> None:
        # Bound by device only, ONNX Runtime allocates each output at the first run and then
        # keeps that buffer, which a batch of another size no longer fits.
        self._binding.clear_binding_outputs()
        for name in self._output_names:
            self._binding.bind_output(name, "cpu")

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The session's outputs for `batch`, as numpy arrays."""
        batch = np.ascontiguousarray(batch)
        key = (batch.shape, batch.dtype)
        if self._input is None or key != self._input_key:
            # Allocates on the device and copies the batch there.
            self._input = ort.OrtValue.ortvalue_from_numpy(batch, self._device, self._device_id)
            self._input_key = key
            self._binding.bind_ortvalue_input(self._input_name, self._input)
            self._bind_outputs()
        else:
            self._input.update_inplace(batch)  # a host-to-device copy into the same buffer
        self._session.run_with_iobinding(self._binding)
        outputs: list[np.ndarray] = self._binding.copy_outputs_to_cpu()
        return outputs


class SessionRunner:
    """Runs a session the plain way: ONNX Runtime reads the numpy batch in place."""

    def __init__(
        self, session: ort.InferenceSession, input_name: str, output_names: list[str]
    ) -> None:
        self._session = session
        self._input_name = input_name
        self._output_names = output_names

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self._session.run(self._output_names, {self._input_name: batch})
        return outputs


class Model:
    """A loaded detector with one ONNX Runtime session per worker. `run` may be called
    from up to `workers` threads at once; each call takes a session no other call is using."""

    def __init__(
        self,
        path: Path,
        sessions: Sequence[ort.InferenceSession],
        spec: ModelSpec,
        device_id: int = 0,
    ) -> None:
        self.path = path
        self.spec = spec
        self._sessions = list(sessions)
        output_names = [o.name for o in self._sessions[0].get_outputs()]
        device = binding_device(self._sessions[0].get_providers())
        self._idle: queue.SimpleQueue[BoundRunner | SessionRunner] = queue.SimpleQueue()
        for session in self._sessions:
            self._idle.put(
                BoundRunner(session, spec.input_name, output_names, device, device_id)
                if device is not None
                else SessionRunner(session, spec.input_name, output_names)
            )

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        format: str = "auto",
        labels: list[str] | None = None,
        imgsz: int | None = None,
        providers: tuple[str, ...] = ("tensorrt", "cuda", "cpu"),
        threads: int | None = None,
        workers: int | None = None,
        device: int = 0,
        fp16: bool = False,
        engine_cache: Path | None = None,
    ) -> Model:
        """`threads` are each worker's; `workers` and `threads` default to `plan_workers`'s
        choice. `device`, `fp16` and `engine_cache` are for the GPU providers (see ModelConfig)."""
        gpu = GpuSettings(device=device, fp16=fp16, engine_cache=engine_cache)
        plan = plan_workers(first_usable_provider(providers), workers, threads, usable_cores())
        sessions = [open_session(path, list(providers), plan.threads, gpu)]
        spec = recognise(sessions[0], path, format=format, labels=labels, imgsz=imgsz)
        # The other workers ask for what the first one got: no second warning, one provider.
        in_use = [SHORT_NAMES[name] for name in sessions[0].get_providers()]
        sessions += [open_session(path, in_use, plan.threads, gpu) for _ in range(plan.workers - 1)]
        model = cls(path, sessions, spec, device_id=device)
        log.info(
            "model %s: %s, %d classes, input %s, provider %s%s, %d worker(s)%s",
            path.name,
            spec.family,
            spec.num_classes,
            spec.input_hw or f"dynamic (long side {spec.imgsz})",
            model.providers[0],
            ", IO binding" if model.io_binding else "",
            model.workers,
            f" of {plan.threads} thread(s)" if plan.threads else "",
        )
        return model

    @property
    def providers(self) -> list[str]:
        """The execution providers really in use, best first."""
        return list(self._sessions[0].get_providers())

    @property
    def io_binding(self) -> bool:
        """Whether `run` keeps the input on the GPU (see `binding_device`)."""
        return binding_device(self.providers) is not None

    @property
    def workers(self) -> int:
        """How many batches can run at once, one per session."""
        return len(self._sessions)

    def input_hw_for(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """The model input size a frame of `frame_hw` is letterboxed to."""
        if self.spec.input_hw is not None:
            return self.spec.input_hw
        return dynamic_input_hw(frame_hw, self.spec.imgsz, self.spec.stride)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw output for a batch `[B, 3, H, W]`, padded to a fixed batch size when needed."""
        runner = self._idle.get()  # blocks while every session is running a batch
        try:
            return self._run_on(runner, batch)
        finally:
            self._idle.put(runner)

    def _run_on(self, runner: BoundRunner | SessionRunner, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        batch = batch.astype(self.spec.input_dtype, copy=False)
        fixed = self.spec.batch
        if fixed is not None and n != fixed:
            padded = np.zeros((fixed, *batch.shape[1:]), batch.dtype)
            padded[:n] = batch
            batch = padded
        (output,) = runner.run(batch)
        return np.asarray(output[:n], np.float32)

    def warm_up(self, batch: int) -> int:
        """Run a blank batch on every session (the first call allocates), then once more;
        nanoseconds that last call took. Call it before anything else runs the model.

        A dynamic-input model is warmed up at the shape of a 16:9 frame, the usual camera.
        """
        hw = self.input_hw_for((720, 1280))
        blank = np.zeros((batch, 3, *hw), np.float32)
        runners = [self._idle.get() for _ in range(self.workers)]
        try:
            for runner in runners:
                if (
                    self.providers[0] == PROVIDERS["tensorrt"]
                    and self.spec.batch is None
                    and batch > 1
                ):
                    # TensorRT builds an engine for the batch sizes seen so far and builds
                    # it again when a batch falls outside them: after 1 and `batch`, every
                    # size in between is covered, and each session's builds happen now,
                    # not in the middle of a stream.
                    self._run_on(runner, np.zeros((1, 3, *hw), np.float32))
                self._run_on(runner, blank)
            started = time.monotonic_ns()
            self._run_on(runners[0], blank)
            return time.monotonic_ns() - started
        finally:
            for runner in runners:
                self._idle.put(runner)

    def candidates(
        self, output: np.ndarray, input_hw: tuple[int, int], confidence: float
    ) -> Candidates:
        """Boxes in input pixels, scores and class ids for one image's output."""
        if self.spec.family == "yolox":
            return decode_yolox(output, input_hw, confidence)
        return decode_yolov8(output, confidence)
