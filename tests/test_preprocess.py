"""Preparing the model input: a decoded frame goes straight from its YUV planes to the
float tensor, and gives what the BGR path gives (the path of non-decoded pictures and of
a hand-written loop), for both letterbox placements and channel orders."""

from __future__ import annotations

import itertools

import av
import numpy as np
import pytest

from streamer.analytics.boxes import letterbox_geometry
from streamer.models import ModelSpec
from streamer.models.families import PAD_VALUE
from streamer.runtime.messages import Frame
from streamer.stages.preprocess import prepare
from tests.conftest import DEMO_CLIP

pytestmark = pytest.mark.timeout(60)

YOLOV8 = ModelSpec("yolov8", "images", None, None, 640, 32, ("person",), True, 1 / 255, True)
YOLOX = ModelSpec("yolox", "images", 1, (416, 416), 416, 32, ("person",), False, 1.0, False)
SHAPES = [(YOLOV8, (384, 640)), (YOLOV8, (640, 640)), (YOLOX, (416, 416))]


def decoded_frames(count: int) -> list[av.VideoFrame]:
    with av.open(str(DEMO_CLIP)) as container:
        return list(itertools.islice(container.decode(video=0), count))


def as_frame(picture: av.VideoFrame | np.ndarray) -> Frame:
    return Frame("cam", 0, None, 0, 0.0, None, picture, 0.0)


@pytest.mark.parametrize(("spec", "input_hw"), SHAPES)
def test_a_decoded_frame_and_its_bgr_picture_give_the_same_tensor(spec, input_hw):
    for decoded in decoded_frames(3):
        from_yuv = prepare(as_frame(decoded), spec, input_hw).tensor
        from_bgr = prepare(as_frame(decoded.to_ndarray(format="bgr24")), spec, input_hw).tensor
        assert from_yuv.shape == from_bgr.shape == (3, *input_hw)
        assert from_yuv.dtype == np.float32
        levels = np.abs(from_yuv - from_bgr) / spec.scale
        assert levels.mean() < 2.0  # two resizers, one image: within a couple of levels
        # Outside the picture, exactly the grey both paths pad with.
        lb = letterbox_geometry((decoded.height, decoded.width), input_hw, spec.centered)
        new_h, new_w = round(decoded.height * lb.scale_y), round(decoded.width * lb.scale_x)
        outside = np.ones(input_hw, bool)
        outside[lb.pad_y : lb.pad_y + new_h, lb.pad_x : lb.pad_x + new_w] = False
        assert outside.any()
        assert np.all(from_yuv[:, outside] == np.float32(PAD_VALUE * spec.scale))


@pytest.mark.parametrize(("spec", "input_hw"), SHAPES)
def test_channels_come_in_the_models_order(spec, input_hw):
    red = np.zeros((360, 640, 3), np.uint8)
    red[..., 2] = 255  # BGR
    decoded = av.VideoFrame.from_ndarray(red, format="bgr24").reformat(format="yuv420p")
    tensor = prepare(as_frame(decoded), spec, input_hw).tensor / spec.scale
    lb = letterbox_geometry((360, 640), input_hw, spec.centered)
    centre = tensor[:, lb.pad_y + 100, lb.pad_x + 100]
    red_channel = 0 if spec.rgb else 2
    assert centre[red_channel] > 200 and centre[2 - red_channel] < 60, centre
