"""Detector models: runtime sessions (ONNX Runtime's, or OpenVINO's) plus the family's pre-
and post-processing rules."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
import onnxruntime as ort

from streamer.analytics.boxes import dynamic_input_hw, letterbox_geometry
from streamer.config.schema import ModelConfig
from streamer.device.arrays import ArrayDevice, choose_array_device
from streamer.device.binding import BoundSession
from streamer.device.prepare import Planes, blank_planes
from streamer.models.decoders import Candidates, decode_yolov8, decode_yolox
from streamer.models.families import ModelSpec, recognise
from streamer.models.openvino import OpenVinoSession, open_sessions
from streamer.models.sessions import (
    GPU_PROVIDERS,
    PROVIDERS,
    SHORT_NAMES,
    GpuSettings,
    choose_providers,
    first_usable_provider,
    open_session,
    plan_workers,
    usable_cores,
)
from streamer.runtime.messages import Letterbox

log = logging.getLogger(__name__)

__all__ = ["Model", "ModelSpec"]

Session: TypeAlias = ort.InferenceSession | OpenVinoSession


def warm_up_sizes(provider: str, fixed_batch: int | None, batch: int) -> list[int]:
    """The batch sizes a session runs before a stream starts. On the CPU the first call
    allocates, and one at the largest size does. On a GPU the first call of each size sets
    up that size's kernels (cuDNN's algorithm choice and plans, TensorRT's engine for the
    sizes seen so far), which a live stream would otherwise wait for mid-stream: every
    size from 1 to `batch` runs (a few milliseconds each once set up), 1 and `batch`
    first so that TensorRT builds one engine that covers them all. A model of fixed batch
    size is always run at that size."""
    if provider not in GPU_PROVIDERS or fixed_batch is not None:
        return [batch]
    return list(dict.fromkeys([1, batch, *range(2, batch)]))


class Model:
    """A loaded detector with one session per worker. `run` may be called from up to
    `workers` threads at once; each call takes a session no other call is using."""

    def __init__(
        self,
        path: Path,
        sessions: Sequence[Session],
        spec: ModelSpec,
        array_device: ArrayDevice | None = None,
    ) -> None:
        """`array_device`: where `run_prepared` prepares batches (None: only `run`)."""
        self.path = path
        self.spec = spec
        self.array_device = array_device
        self._sessions = list(sessions)
        self._bound: dict[int, BoundSession] = {}  # by id(session), made at first use
        self._output_names = [o.name for o in self._sessions[0].get_outputs()]
        self._idle: queue.SimpleQueue[Session] = queue.SimpleQueue()
        for session in self._sessions:
            self._idle.put(session)

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
        openvino_device: str = "CPU",
        prepare_on: str = "auto",
    ) -> Model:
        """`threads` are each worker's; `workers` and `threads` default to `plan_workers`'s
        choice. `device`, `fp16`, `engine_cache` and `openvino_device` are for the
        accelerator providers, `prepare_on` says where batches are prepared (see
        ModelConfig)."""
        gpu = GpuSettings(device, fp16, engine_cache, openvino_device)
        first = first_usable_provider(providers, openvino_device)
        plan = plan_workers(first, workers, threads, usable_cores())
        sessions: list[Session]
        if first == PROVIDERS["openvino"]:
            choose_providers(providers, openvino_device)  # warns of those skipped before it
            # ONNX Runtime reads the model's inputs, outputs and metadata, as for the others.
            probe = open_session(path, ["cpu"], 1)
            spec = recognise(probe, path, format=format, labels=labels, imgsz=imgsz)
            sessions = list(open_sessions(path, plan.workers, plan.threads, openvino_device))
        else:
            first_session = open_session(path, list(providers), plan.threads, gpu)
            spec = recognise(first_session, path, format=format, labels=labels, imgsz=imgsz)
            # The other workers ask for what the first one got: no second warning.
            in_use = [SHORT_NAMES[name] for name in first_session.get_providers()]
            sessions = [first_session] + [
                open_session(path, in_use, plan.threads, gpu) for _ in range(plan.workers - 1)
            ]
        on_gpu = sessions[0].get_providers()[0] in GPU_PROVIDERS
        model = cls(path, sessions, spec, choose_array_device(prepare_on, on_gpu, device))
        log.info(
            "model %s: %s, %d classes, input %s, provider %s, %d worker(s)%s%s",
            path.name,
            spec.family,
            spec.num_classes,
            spec.input_hw or f"dynamic (long side {spec.imgsz})",
            model.providers[0],
            model.workers,
            f" of {plan.threads} thread(s)" if plan.threads else "",
            ", frames prepared on the GPU" if model.array_device is not None else "",
        )
        return model

    @classmethod
    def from_config(cls, config: ModelConfig) -> Model:
        """The pipeline's `model:` section loaded: ModelError for a file that is missing,
        not ONNX, or of a family streamer cannot decode."""
        return cls.load(
            config.path,
            format=config.family,
            labels=config.labels,
            imgsz=config.input_size,
            providers=tuple(str(p) for p in config.providers),
            threads=config.threads,
            workers=config.workers,
            device=config.device,
            fp16=config.fp16,
            engine_cache=config.engine_cache,
            openvino_device=config.openvino_device,
            prepare_on=str(config.prepare_on),
        )

    @property
    def providers(self) -> list[str]:
        """The execution providers really in use, best first."""
        return list(self._sessions[0].get_providers())

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
        session = self._idle.get()  # blocks while every session is running a batch
        try:
            return self._run_on(session, batch)
        finally:
            self._idle.put(session)

    def _run_on(self, session: Session, batch: np.ndarray) -> np.ndarray:
        """Run the plain way: ONNX Runtime reads the numpy batch in place on the CPU, and on
        a GPU copies it in and the outputs out within the call. Binding a reused device
        buffer instead (IO binding) measured no faster with batches prepared on the CPU
        (YOLOv8n 384x640, batch 8, on an H200: 9.0 ms bound against 5.1 plain in one run;
        the plain call gave 8.9 in another), so it is not worth its code."""
        n = len(batch)
        batch = batch.astype(self.spec.input_dtype, copy=False)
        fixed = self.spec.batch
        if fixed is not None and n != fixed:
            padded = np.zeros((fixed, *batch.shape[1:]), batch.dtype)
            padded[:n] = batch
            batch = padded
        (output,) = session.run(self._output_names, {self.spec.input_name: batch})
        return np.asarray(output[:n], np.float32)

    def run_prepared(
        self,
        pictures: Sequence[Planes | np.ndarray],
        letterboxes: Sequence[Letterbox],
        input_hw: tuple[int, int],
    ) -> np.ndarray:
        """Raw output for pictures prepared on `array_device` straight into the batch
        buffer of the session that runs them (tensors prepared on the CPU are copied in)."""
        session = self._idle.get()
        try:
            return self._bound_to(session).run(pictures, letterboxes, input_hw)
        finally:
            self._idle.put(session)

    def _bound_to(self, session: Session) -> BoundSession:
        if self.array_device is None or not isinstance(session, ort.InferenceSession):
            raise RuntimeError("this model prepares batches on the CPU: call run")
        bound = self._bound.get(id(session))
        if bound is None:
            bound = self._bound[id(session)] = BoundSession(session, self.spec, self.array_device)
        return bound

    def warm_up(self, batch: int) -> int:
        """Run blank batches on every session (see `warm_up_sizes`), then once more at
        `batch`; nanoseconds that last call took. Call it before anything else runs the model.

        A dynamic-input model is warmed up at the shape of a 16:9 frame, the usual camera.
        Where batches are prepared on the GPU, a batch of blank 720p pictures is also
        prepared and run on each session: CuPy compiles its kernels at their first use,
        and the session's input buffer is made at its largest.
        """
        frame_hw = (720, 1280)
        hw = self.input_hw_for(frame_hw)
        sizes = warm_up_sizes(self.providers[0], self.spec.batch, batch)
        blank = np.zeros((batch, 3, *hw), np.float32)
        sessions = [self._idle.get() for _ in range(self.workers)]
        device = self.array_device
        pictures = [] if device is None else [blank_planes(device.xp, frame_hw)] * batch
        letterboxes = [letterbox_geometry(frame_hw, hw, self.spec.centered)] * batch
        try:
            for session in sessions:
                for size in sizes:
                    self._run_on(session, blank[:size])
                if pictures:
                    self._bound_to(session).run(pictures, letterboxes, hw)
            started = time.monotonic_ns()
            if pictures:
                self._bound_to(sessions[0]).run(pictures, letterboxes, hw)
            else:
                self._run_on(sessions[0], blank)
            return time.monotonic_ns() - started
        finally:
            for session in sessions:
                self._idle.put(session)

    def candidates(
        self, output: np.ndarray, input_hw: tuple[int, int], confidence: float
    ) -> Candidates:
        """Boxes in input pixels, scores and class ids for one image's output."""
        if self.spec.family == "yolox":
            return decode_yolox(output, input_hw, confidence)
        return decode_yolov8(output, confidence)
