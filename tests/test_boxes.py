"""Letterbox geometry and its inverse, IoU and class-aware NMS against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.analytics.boxes import (
    cxcywh_to_xyxy,
    dynamic_input_hw,
    iou_one_to_many,
    letterbox_geometry,
    nms,
    unletterbox,
)
from streamer.runtime.messages import Letterbox


@pytest.mark.parametrize(
    ("src_hw", "imgsz", "expected"),
    [
        ((720, 1280), 640, (384, 640)),  # 16:9 -> 360 rows, padded to the next multiple of 32
        ((1080, 1920), 640, (384, 640)),
        ((432, 768), 640, (384, 640)),  # the person clip: 360 rows as well
        ((480, 640), 640, (480, 640)),  # already multiples of 32
        ((640, 640), 320, (320, 320)),
        ((360, 640), 320, (192, 320)),  # 180 rows -> 192
        ((1280, 720), 640, (640, 384)),  # portrait
    ],
)
def test_dynamic_input_size_is_the_smallest_stride_multiple_that_fits(src_hw, imgsz, expected):
    assert dynamic_input_hw(src_hw, imgsz, 32) == expected


@pytest.mark.parametrize(
    ("src_hw", "dst_hw", "centered", "expected"),
    [
        ((720, 1280), (384, 640), True, Letterbox(0.5, 0.5, 0, 12)),
        ((720, 1280), (640, 640), True, Letterbox(0.5, 0.5, 0, 140)),
        ((432, 768), (416, 416), False, Letterbox(416 / 768, 234 / 432, 0, 0)),
        ((480, 640), (480, 640), True, Letterbox(1.0, 1.0, 0, 0)),
        ((100, 100), (416, 416), False, Letterbox(4.16, 4.16, 0, 0)),  # small frames are scaled up
        ((10, 20), (15, 20), True, Letterbox(1.0, 1.0, 0, 2)),  # odd padding: 2 top, 3 bottom
    ],
)
def test_letterbox_geometry(src_hw, dst_hw, centered, expected):
    assert letterbox_geometry(src_hw, dst_hw, centered) == pytest.approx(expected)


def test_unletterbox_inverts_the_letterbox_and_clips_to_the_frame():
    lb = letterbox_geometry((720, 1280), (384, 640), centered=True)
    source_boxes = np.array([[100.0, 200.0, 300.0, 500.0], [0.0, 0.0, 1280.0, 720.0]])
    in_input = source_boxes.copy()
    in_input[:, [0, 2]] = source_boxes[:, [0, 2]] * lb.scale_x + lb.pad_x
    in_input[:, [1, 3]] = source_boxes[:, [1, 3]] * lb.scale_y + lb.pad_y
    np.testing.assert_allclose(unletterbox(in_input, lb, (720, 1280)), source_boxes, atol=1e-4)

    outside = np.array([[-10.0, 0.0, 700.0, 400.0]])  # reaches into the padding
    assert unletterbox(outside, lb, (720, 1280)).tolist() == [[0.0, 0.0, 1280.0, 720.0]]


def test_unletterbox_of_no_boxes():
    lb = Letterbox(0.5, 0.5, 0, 12)
    assert unletterbox(np.empty((0, 4), np.float32), lb, (720, 1280)).shape == (0, 4)


def test_cxcywh_to_xyxy():
    assert cxcywh_to_xyxy(np.array([[10.0, 20.0, 4.0, 6.0]])).tolist() == [[8.0, 17.0, 12.0, 23.0]]


def test_iou_one_to_many():
    box = np.array([0.0, 0.0, 10.0, 10.0])
    others = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], float)
    assert iou_one_to_many(box, others) == pytest.approx([1.0, 50 / 150, 0.0, 0.0])


@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "iou", "max_det", "expected"),
    [
        ([], [], [], 0.5, 100, []),
        ([[0, 0, 10, 10]], [0.5], [0], 0.5, 100, [0]),
        # overlapping, same class: the weaker one goes (IoU 81/100 > 0.5)
        ([[0, 0, 10, 10], [1, 1, 10, 10]], [0.8, 0.9], [0, 0], 0.5, 100, [1]),
        # the same overlap, different classes: both stay
        ([[0, 0, 10, 10], [1, 1, 10, 10]], [0.8, 0.9], [0, 1], 0.5, 100, [1, 0]),
        # IoU 50/150 = 0.33 is below the threshold: both stay, best first
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.6, 0.7], [3, 3], 0.5, 100, [1, 0]),
        # a chain: 0 suppresses 1, and 2 (not overlapping 0) stays although 1 overlapped it
        (
            [[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]],
            [0.9, 0.8, 0.7],
            [0, 0, 0],
            0.3,
            100,
            [0, 2],
        ),
        # max detections
        ([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], [0.1, 0.3, 0.2], [0, 0, 0], 0.5, 2, [1, 2]),
    ],
)
def test_class_aware_nms(boxes, scores, classes, iou, max_det, expected):
    kept = nms(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(classes, np.int64),
        iou,
        max_det,
    )
    assert kept.tolist() == expected
