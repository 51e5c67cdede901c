"""One frame of the plain loop users write by hand: OpenCV letterbox, run, NMS. Shared by
the benchmarks that compare streamer with it."""

from __future__ import annotations

import numpy as np

from streamer.boxes import nms
from streamer.messages import Frame
from streamer.models import Model
from streamer.preprocess import prepare


def detect(model: Model, image: np.ndarray, confidence: float) -> np.ndarray:
    """The kept boxes' indices for one BGR image, one frame at a time."""
    frame = Frame("plain", 0, None, 0, 0.0, None, image, 0.0)
    prepared = prepare(frame, model.spec, model.input_hw_for(image.shape[:2]))
    output = model.run(prepared.tensor[None])[0]
    hw = (prepared.tensor.shape[1], prepared.tensor.shape[2])
    xyxy, scores, classes = model.candidates(output, hw, confidence)
    return nms(xyxy, scores, classes, 0.45, 300)
