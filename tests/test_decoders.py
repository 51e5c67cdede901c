"""Both output decoders against hand-built outputs."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.models.decoders import decode_yolov8, decode_yolox, yolox_grid, yolox_rows


def test_yolov8_decodes_centre_boxes_and_takes_the_best_class():
    nc, n = 3, 4
    out = np.zeros((4 + nc, n), np.float32)
    out[:4, 0] = [50, 60, 20, 10]  # cx, cy, w, h
    out[4:, 0] = [0.1, 0.9, 0.2]
    out[:4, 2] = [10, 10, 4, 4]
    out[4:, 2] = [0.3, 0.0, 0.0]  # below the threshold
    xyxy, scores, classes = decode_yolov8(out, confidence=0.5)
    assert xyxy.tolist() == [[40, 55, 60, 65]]
    assert scores == pytest.approx([0.9])
    assert classes.tolist() == [1]


def test_yolov8_with_nothing_above_the_threshold():
    xyxy, scores, classes = decode_yolov8(np.zeros((84, 10), np.float32), confidence=0.25)
    assert xyxy.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)


def test_yolox_rows_for_416():
    assert yolox_rows((416, 416)) == 52 * 52 + 26 * 26 + 13 * 13 == 3549


def test_yolox_grid_order_is_stride_then_row_major():
    grid, strides = yolox_grid((64, 32))  # 8x4 cells at stride 8, 4x2 at 16, 2x1 at 32
    assert len(grid) == 32 + 8 + 2
    assert grid[:5].tolist() == [[0, 0], [1, 0], [2, 0], [3, 0], [0, 1]]
    assert grid[32:34].tolist() == [[0, 0], [1, 0]]
    assert strides[[0, 31, 32, 39, 40, 41]].ravel().tolist() == [8, 8, 16, 16, 32, 32]


def test_yolox_decodes_grid_offsets_and_multiplies_objectness():
    input_hw = (64, 32)
    nc = 2
    out = np.zeros((yolox_rows(input_hw), 5 + nc), np.float32)
    # row 5 is cell (x=1, y=1) at stride 8
    out[5, :4] = [0.5, 0.25, np.log(2.0), 0.0]
    out[5, 4] = 0.8
    out[5, 5:] = [0.5, 0.9]
    # row 33 is cell (1, 0) at stride 16: objectness too low
    out[33, 4] = 0.2
    out[33, 5:] = [1.0, 0.0]
    xyxy, scores, classes = decode_yolox(out, input_hw, confidence=0.5)
    # centre ((0.5 + 1) * 8, (0.25 + 1) * 8) = (12, 10); size (2 * 8, 1 * 8) = (16, 8)
    assert xyxy[0] == pytest.approx([4, 6, 20, 14])
    assert scores == pytest.approx([0.72])
    assert classes.tolist() == [1]


@pytest.mark.parametrize("seed", range(5))
def test_decoders_keep_exactly_the_boxes_whose_best_class_score_passes(seed):
    """Against the obvious computation: every box's best class and score, then the filter."""
    rng = np.random.default_rng(seed)
    v8 = rng.random((84, 2100), np.float32)
    v8[4:] *= rng.random((1, 2100), np.float32)  # some boxes sure of a class, most not
    xyxy, scores, classes = decode_yolov8(v8, confidence=0.3)
    best = v8[4:].argmax(axis=0)
    score = v8[4:].max(axis=0)
    passed = score >= 0.3
    assert 0 < passed.sum() < len(passed)
    np.testing.assert_array_equal(classes, best[passed])
    np.testing.assert_array_equal(scores, score[passed])
    assert len(xyxy) == passed.sum()

    x = rng.random((yolox_rows((64, 96)), 85), np.float32)
    xyxy, scores, classes = decode_yolox(x, (64, 96), confidence=0.3)
    best = x[:, 5:].argmax(axis=1)
    score = x[:, 4] * x[:, 5:].max(axis=1)
    passed = score >= 0.3
    assert 0 < passed.sum() < len(passed)
    np.testing.assert_array_equal(classes, best[passed])
    np.testing.assert_allclose(scores, score[passed], rtol=1e-6)
    assert len(xyxy) == passed.sum()
