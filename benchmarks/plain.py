"""What the benchmarks that compare streamer with other ways share: one frame of the plain
loop users write by hand (OpenCV letterbox, run, NMS), and inference alone, the limit."""

from __future__ import annotations

import threading
import time

import numpy as np

from streamer.analytics.boxes import nms
from streamer.models import Model
from streamer.runtime.messages import Frame
from streamer.stages.preprocess import tensor_of


def detect(model: Model, image: np.ndarray, confidence: float) -> np.ndarray:
    """The kept boxes' indices for one BGR image, one frame at a time."""
    frame = Frame("plain", 0, None, 0, 0.0, None, image, 0.0)
    hw = model.input_hw_for(image.shape[:2])
    output = model.run(tensor_of(frame, model.spec, hw)[None])[0]
    xyxy, scores, classes = model.candidates(output, hw, confidence)
    return nms(xyxy, scores, classes, 0.45, 300)


def inference_alone(model: Model, batch: int, input_hw: tuple[int, int], seconds: float) -> float:
    """Frames per second of the model on one ready batch, run back to back for `seconds`
    from as many threads as the model has workers, as the pipeline runs it."""
    tensor = np.random.rand(batch, 3, *input_hw).astype(np.float32)
    return batches_per_s(model, [tensor], seconds) * batch


def batches_per_s(model: Model, batches: list[np.ndarray], seconds: float) -> float:
    """Calls a second of the model on `batches` in turn, back to back for `seconds` from
    as many threads as the model has workers, as the pipeline runs it."""
    for i in range(model.workers):
        model.run(batches[i % len(batches)])  # the first call of each session allocates
    calls = [0] * model.workers
    started = time.perf_counter()

    def call_back_to_back(worker: int) -> None:
        while time.perf_counter() - started < seconds:
            model.run(batches[(calls[worker] * model.workers + worker) % len(batches)])
            calls[worker] += 1

    threads = [threading.Thread(target=call_back_to_back, args=(i,)) for i in range(model.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(calls) / (time.perf_counter() - started)
