"""A session fed through ONNX Runtime's IO binding from a batch buffer it keeps.

Each session has one input buffer per input size, allocated once on the device with room
for the largest batch, which batches are prepared straight into; the model reads it in
place and only its outputs are copied to the host. On the CPU (the tests) the buffer is
a NumPy array and the binding is to host memory: the same calls, without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from streamer.device.arrays import ArrayDevice
from streamer.device.prepare import BatchPreparer, Planes
from streamer.models.families import ModelSpec
from streamer.runtime.messages import Letterbox


class BoundSession:
    """Runs one session on batches prepared in its own buffers. Not thread-safe: one
    caller at a time, as a session from the model's idle queue has."""

    def __init__(self, session: ort.InferenceSession, spec: ModelSpec, device: ArrayDevice) -> None:
        self._session = session
        self._spec = spec
        self._device = device
        self._preparer = BatchPreparer(device.xp)
        self._output_name = session.get_outputs()[0].name
        self._buffers: dict[tuple[int, int], Any] = {}

    def buffer(self, input_hw: tuple[int, int], rows: int) -> Any:
        """The input buffer for `input_hw` with at least `rows` slots, made at the first
        batch of that size and made again only for a larger batch (the model's warm-up
        runs the largest one before a stream starts)."""
        buffer = self._buffers.get(input_hw)
        if buffer is None or len(buffer) < rows:
            shape = (rows, 3, *input_hw)
            buffer = self._buffers[input_hw] = self._device.xp.empty(shape, self._spec.input_dtype)
        return buffer

    def run(
        self,
        pictures: Sequence[Planes | np.ndarray],
        letterboxes: Sequence[Letterbox],
        input_hw: tuple[int, int],
    ) -> np.ndarray:
        """The model's raw output for the pictures (planes, or tensors prepared on the CPU),
        letterboxed to `input_hw`, one row each."""
        n = len(pictures)
        rows = self._spec.batch or n  # a fixed-batch model reads every slot
        device = self._device
        device.use()
        buffer = self.buffer(input_hw, max(rows, n))
        self._preparer.into(buffer, pictures, letterboxes, self._spec)
        device.synchronize()
        binding = self._session.io_binding()
        binding.bind_input(
            self._spec.input_name,
            device.ort_device,
            device.device_id,
            np.dtype(self._spec.input_dtype),
            [rows, 3, *input_hw],
            device.pointer(buffer),
        )
        binding.bind_output(self._output_name, device.ort_device, device.device_id)
        self._session.run_with_iobinding(binding)
        (output,) = binding.copy_outputs_to_cpu()
        return np.asarray(output[:n], np.float32)
