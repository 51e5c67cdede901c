"""Every shipped pipeline validates, and the demo detects what its clip really shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamer.analytics.boxes import iou_one_to_many
from tests.conftest import REPO, read_events, run_cli, run_with_stats

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PIPELINES = sorted((REPO / "pipelines").glob("*.yaml"))


def test_there_are_pipelines():
    assert {p.name for p in PIPELINES} >= {"demo.yaml", "rtsp-camera.yaml"}


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.name)
def test_every_pipeline_validates(pipeline: Path):
    result = run_cli("validate", str(pipeline))
    assert result.returncode == 0, result.stderr
    assert f"{pipeline}: ok" in result.stdout


def test_the_demo_detects_the_people_and_cars_of_its_clip(tmp_path, redis_client, redis_server):
    demo = REPO / "pipelines" / "demo.yaml"
    result, stats = run_with_stats(demo, redis_server.url, stats_file=tmp_path / "stats.json")
    assert result.returncode == 0, result.stderr
    truth = json.loads((REPO / "sample_videos" / "parking.json").read_text())
    truth_frames = truth["boxes"]
    assert stats["frames"]["processed"] == stats["frames"]["decoded"] == len(truth_frames)

    events = [
        e for e in read_events(redis_client, "streamer:demo:events") if e["type"] == "detections"
    ]
    assert len(events) == len(truth_frames)
    matched = {"person": 0, "car": 0}
    expected = {"person": 0, "car": 0}
    reported = {"person": 0, "car": 0}
    for event in events:
        boxes = truth_frames[str(event["frame"]["index"])]
        for label in matched:
            want = np.array([b["xyxy"] for b in boxes if b["label"] == label], float).reshape(-1, 4)
            got = [o["bbox"] for o in event["objects"] if o["label"] == label]
            expected[label] += len(want)
            reported[label] += len(got)
            free = np.ones(len(want), bool)
            for box in got:
                if not free.any():
                    break
                ious = np.where(free, iou_one_to_many(np.array(box, float), want), 0.0)
                if ious.max() >= 0.5:
                    free[ious.argmax()] = False
                    matched[label] += 1
    for label in matched:
        assert expected[label] > 100, f"the clip should show many {label}s"
        recall = matched[label] / expected[label]
        precision = matched[label] / max(reported[label], 1)
        assert recall >= 0.9, f"{label}: recall {recall:.2f}"
        assert precision >= 0.9, f"{label}: precision {precision:.2f}"
