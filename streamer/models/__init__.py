"""Detector models: an ONNX Runtime session plus the family's pre- and post-processing rules."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamer.boxes import dynamic_input_hw
from streamer.models.decoders import Candidates, decode_yolov8, decode_yolox
from streamer.models.families import ModelSpec, recognise
from streamer.models.runtime import open_session

log = logging.getLogger(__name__)

__all__ = ["Model", "ModelSpec"]


class Model:
    """A loaded detector. `run` is called from one thread only: the inference stage's."""

    def __init__(self, path: Path, session: ort.InferenceSession, spec: ModelSpec) -> None:
        self.path = path
        self.spec = spec
        self._session = session
        self._output_names = [o.name for o in session.get_outputs()]

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
    ) -> Model:
        session = open_session(path, list(providers), threads)
        spec = recognise(session, path, format=format, labels=labels, imgsz=imgsz)
        model = cls(path, session, spec)
        log.info(
            "model %s: %s, %d classes, input %s, provider %s",
            path.name,
            spec.family,
            spec.num_classes,
            spec.input_hw or f"dynamic (long side {spec.imgsz})",
            model.providers[0],
        )
        return model

    @property
    def providers(self) -> list[str]:
        """The execution providers really in use, best first."""
        return list(self._session.get_providers())

    def input_hw_for(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """The model input size a frame of `frame_hw` is letterboxed to."""
        if self.spec.input_hw is not None:
            return self.spec.input_hw
        return dynamic_input_hw(frame_hw, self.spec.imgsz, self.spec.stride)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw output for a batch `[B, 3, H, W]`, padded to a fixed batch size when needed."""
        n = len(batch)
        batch = batch.astype(self.spec.input_dtype, copy=False)
        fixed = self.spec.batch
        if fixed is not None and n != fixed:
            padded = np.zeros((fixed, *batch.shape[1:]), batch.dtype)
            padded[:n] = batch
            batch = padded
        (output,) = self._session.run(self._output_names, {self.spec.input_name: batch})
        return np.asarray(output[:n], np.float32)

    def warm_up(self, batch: int) -> int:
        """Run a blank batch twice (the first call allocates); nanoseconds the second took.

        A dynamic-input model is warmed up at the shape of a 16:9 frame, the usual camera.
        """
        hw = self.input_hw_for((720, 1280))
        blank = np.zeros((batch, 3, *hw), np.float32)
        self.run(blank)
        started = time.monotonic_ns()
        self.run(blank)
        return time.monotonic_ns() - started

    def candidates(
        self, output: np.ndarray, input_hw: tuple[int, int], confidence: float
    ) -> Candidates:
        """Boxes in input pixels, scores and class ids for one image's output."""
        if self.spec.family == "yolox":
            return decode_yolox(output, input_hw, confidence)
        return decode_yolov8(output, confidence)
