"""Motion-gated inference: the detector on pictures with known motion, the tracker holding
its objects through still frames, and whole pipelines (the demo model, real Redis) on
rendered scenes, gated and ungated."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from streamer.analytics.motion import MotionDetector, MotionGate, MotionSettings
from streamer.analytics.tracking import Tracker, TrackerSettings
from streamer.config import parse_config
from streamer.errors import ConfigError
from streamer.models.quantize import match_detections
from streamer.runtime.messages import Detections, Frame, Prepared, Still
from streamer.stages.inference import shape_groups
from tests.conftest import DEMO_MODEL, read_events, run_with_stats
from tests.test_objects import BOUNDARIES, GATE_X, ONE_BY_ONE, PAD
from tools.make_sample_video import write_clip
from tools.scenes import Scene, SceneObject

H, W = 360, 640


def room(seed: int) -> np.ndarray:
    """A textured grey picture with a little sensor noise of its own."""
    base = np.random.default_rng(0).integers(60, 180, (H, W)).astype(np.float32)
    base = np.asarray(
        np.clip(base + np.random.default_rng(seed).normal(0, 2, (H, W)), 0, 255), np.uint8
    )
    return base


def with_square(picture: np.ndarray, x: int, y: int, size: int = 40) -> np.ndarray:
    out = picture.copy()
    out[y : y + size, x : x + size] = 250
    return out


def observe_all(detector: MotionDetector, pictures: list[np.ndarray], fps: int = 15) -> list[bool]:
    return [detector.observe(p, i / fps).moved for i, p in enumerate(pictures)]


def test_a_still_noisy_picture_is_no_motion_and_a_moving_square_is():
    detector = MotionDetector(MotionSettings())
    still = observe_all(detector, [room(seed) for seed in range(30)])
    assert still[0]  # nothing to compare the first picture with: it is detected
    assert not any(still[1:])
    moving = [detector.observe(with_square(room(100 + i), 100 + 8 * i, 150), (30 + i) / 15)
              for i in range(10)]  # fmt: skip
    assert all(m.moved for m in moving)
    assert all(0 < m.share < 0.1 for m in moving)


def test_a_region_smaller_than_min_area_is_no_motion():
    detector = MotionDetector(MotionSettings(min_area=0.01))  # 2,304 px of 640x360
    observe_all(detector, [room(seed) for seed in range(5)])
    assert not detector.observe(with_square(room(9), 100, 100, size=30), 1.0).moved  # 900 px
    assert detector.observe(with_square(room(10), 100, 100, size=80), 1.1).moved  # 6,400 px


def test_motion_inside_a_mask_is_ignored_and_outside_it_is_not():
    mask = ((0.0, 0.0), (320.0, 0.0), (320.0, 180.0), (0.0, 180.0))  # the top-left quarter
    detector = MotionDetector(MotionSettings(masks=(mask,)))
    observe_all(detector, [room(seed) for seed in range(5)])
    inside = [detector.observe(with_square(room(10 + i), 50 + 10 * i, 50), (5 + i) / 15).moved
              for i in range(10)]  # fmt: skip
    assert not any(inside)
    assert detector.observe(with_square(room(30), 450, 250), 2.0).moved


def test_light_over_the_whole_picture_resets_the_background():
    detector = MotionDetector(MotionSettings())
    observe_all(detector, [room(seed) for seed in range(5)])
    brighter = np.asarray(np.clip(room(6).astype(np.int16) + 60, 0, 255), np.uint8)
    change = detector.observe(brighter, 0.5)
    assert change.moved and change.light
    brighter_again = np.asarray(np.clip(room(7).astype(np.int16) + 60, 0, 255), np.uint8)
    assert not detector.observe(brighter_again, 0.6).moved  # the new light is the background


def test_a_stopped_object_becomes_background_on_the_source_clock():
    """After about two time constants of the source's time an object that stopped is no
    longer motion, however many frames that took."""
    for fps in (5, 30):
        detector = MotionDetector(MotionSettings(background_s=1.0))
        observe_all(detector, [room(seed) for seed in range(3)], fps)
        frames = [with_square(room(10 + i), 300, 150, size=60) for i in range(round(6 * fps))]
        moved = observe_all(detector, frames, fps)
        settled_s = moved.index(False) / fps
        assert 1.5 <= settled_s <= 4.0, (fps, settled_s)


def test_the_gate_runs_the_model_on_motion_and_every_detect_every_s():
    gate = MotionGate(MotionSettings(detect_every_s=2.0))
    bgr = [np.repeat(room(seed)[:, :, None], 3, axis=2) for seed in range(91)]
    runs = [i for i, picture in enumerate(bgr) if gate.wants_model(picture, i / 15)]
    assert runs == [0, 30, 60, 90]  # 6 s of a still picture at 15 fps
    assert gate.wants_model(bgr[0], 0.0)  # a clock that went back (a looped file)


def held_box(tracker: Tracker, t_s: float, box: tuple[float, ...] | None) -> list[int]:
    if box is None:
        detections = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                np.zeros(0, np.int64))  # fmt: skip
    else:
        detections = Detections(np.array([box], np.float32), np.array([0.9], np.float32),
                                np.array([0]))  # fmt: skip
    update = tracker.update(t_s, detections)
    assert not update.ended, f"the object ended at {t_s}"
    return [t.track_id for t in update.seen]


def test_the_tracker_holds_its_objects_through_still_frames():
    """A person standing for a minute, the model run every 2 s and missing the person at
    one of those runs: one object, never ended."""
    tracker = Tracker(TrackerSettings(lost_after_s=1.0))
    box = (100.0, 100.0, 140.0, 200.0)
    ids = set()
    for i in range(5):  # walks in and is confirmed
        ids.update(held_box(tracker, i / 15, box))
    t, in_view = 5 / 15, [1]
    while t < 60:
        t += 1 / 15
        detected = round(t * 15) % 30 == 0
        if not detected:  # held: in view if it was at the last frame
            assert [tr.track_id for tr in tracker.hold(t)] == in_view
        elif round(t * 15) % 300 == 0:
            in_view = held_box(tracker, t, None)  # the model missed it once
        else:
            in_view = held_box(tracker, t, box)
            ids.update(in_view)
    assert ids == {1}
    assert tracker.tracks[0].dwell_s == pytest.approx(t, abs=0.1)


def test_still_frames_keep_their_place_among_their_sources_frames():
    def frame(source: str, index: int) -> Frame:
        return Frame(source, index, None, 0, 0.0, None, np.zeros((1, 1, 3), np.uint8), 0.0)

    def prepared(source: str, index: int, shape: tuple[int, int]) -> Prepared:
        return Prepared(frame(source, index), np.zeros((3, *shape), np.float32), None)  # type: ignore[arg-type]

    a0, b0 = prepared("a", 0, (32, 32)), prepared("b", 0, (64, 64))
    a1, b1, c0 = Still(frame("a", 1)), Still(frame("b", 1)), Still(frame("c", 0))
    groups = shape_groups([a0, b0, a1, b1, c0])
    assert groups == [[a0, a1, c0], [b0, b1]]


def test_motion_settings_per_pipeline_and_per_source():
    config = parse_config({
        "name": "p",
        "sources": [
            {"id": "a", "uri": "a.mp4"},
            {"id": "b", "uri": "b.mp4", "motion": False},
            {"id": "c", "uri": "c.mp4", "motion": {"masks": [[[0, 0], [10, 0], [10, 10]]]}},
        ],
        "model": {"path": "m.onnx"},
        "motion": {"threshold": 30},
    }, "p.yaml")  # fmt: skip
    a, b, c = (config.motion_of(s) for s in config.sources)
    assert a is not None and a.threshold == 30 and a.masks == []
    assert b is None
    assert c is not None and c.threshold == 30 and len(c.masks) == 1
    off = parse_config({"name": "p", "model": {"path": "m.onnx"},
                        "sources": [{"id": "a", "uri": "a.mp4"}, {"id": "b", "uri": "b.mp4",
                                                                  "motion": True}]},
                       "p.yaml")  # fmt: skip
    assert off.motion_of(off.sources[0]) is None
    assert off.motion_of(off.sources[1]) is not None


@pytest.mark.parametrize(
    ("motion", "wrong"),
    [
        ({"threshold": 0}, "threshold"),
        ({"masks": [[[0, 0], [5, 5], [10, 10]]]}, "no area"),
        ({"detect_every_s": -1}, "detect_every_s"),
        ({"sensitivity": 3}, "sensitivity"),
    ],
)
def test_bad_motion_settings_are_refused(motion, wrong):
    with pytest.raises(ConfigError, match=wrong):
        parse_config({"name": "p", "sources": [{"id": "a", "uri": "a.mp4"}],
                      "model": {"path": "m.onnx"}, "motion": motion}, "p.yaml")  # fmt: skip


OBJECT_EVENTS = ["object_appeared", "object_left", "zone_entered", "zone_exited", "line_crossed"]
LABELS = {"person": 0, "car": 1}


def boxes_by_frame(events: list[dict[str, Any]]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per frame index, the boxes of its `detections` event and their classes."""
    out = {}
    for e in events:
        if e["type"] == "detections":
            boxes = np.array([o["bbox"] for o in e["objects"]], np.float64).reshape(-1, 4)
            out[e["frame"]["index"]] = (boxes, np.array([LABELS[o["label"]] for o in e["objects"]]))
    return out


def kept_share(plain: list[dict[str, Any]], gated: list[dict[str, Any]]) -> float:
    """Of the boxes the ungated run found, the share the gated run shows on the same frame
    (same class, IoU >= 0.5): on still frames the gated run shows the boxes it held."""
    ours, theirs = boxes_by_frame(gated), boxes_by_frame(plain)
    found = kept = 0
    for index, (boxes, classes) in theirs.items():
        found += len(boxes)
        kept += len(match_detections(boxes, classes, *ours[index]))
    return kept / found


def run_scene(
    clip: Path, name: str, folder: Path, redis_url: str, client: Any, extra: dict[str, Any],
    *args: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    pipeline = folder / f"{name}.yaml"
    pipeline.write_text(yaml.safe_dump({
        "name": name,
        "sources": [{"id": "cam1", "uri": str(clip)}],
        "model": {"path": str(DEMO_MODEL), "confidence": 0.35},
        "events": {"emit": [*OBJECT_EVENTS, "detections"]},
        **extra,
    }))  # fmt: skip
    result, stats = run_with_stats(pipeline, redis_url, *args)
    assert result.returncode == 0, result.stderr
    events = [e for e in read_events(client, f"streamer:{name}:events")
              if e["type"] != "source_status"]  # fmt: skip
    return events, stats


def what_happened(events: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(
        (e["type"], e["object"]["label"], e.get("zone"), e.get("line"), e.get("direction"))
        for e in events
        if e["type"] != "detections"
    )


@pytest.mark.timeout(180)
def test_gating_changes_no_event_on_rendered_scenes(tmp_path, redis_server, redis_client):
    """People who come one by one with still gaps between them, and a busy scene of
    crossings and a zone visit: the same objects, zone and line events with and without
    motion gating, and at least 98 % of the boxes; the still frames of the first are
    spared the model."""
    regions = {
        "zones": [{"name": "pad", "polygon": PAD, "labels": ["person"]}],
        "lines": [{"name": "gate", "points": [[GATE_X, 60], [GATE_X, 360]]}],
    }
    for scene, name in ((ONE_BY_ONE, "onebyone"), (BOUNDARIES, "boundaries")):
        clip = tmp_path / f"{name}.mp4"
        write_clip(scene, clip)
        plain, plain_stats = run_scene(clip, f"{name}-plain", tmp_path, redis_server.url,
                                       redis_client, regions)  # fmt: skip
        gated, stats = run_scene(clip, f"{name}-gated", tmp_path, redis_server.url,
                                 redis_client, {**regions, "motion": True})  # fmt: skip
        assert what_happened(gated) == what_happened(plain), name
        assert kept_share(plain, gated) >= 0.98, name
        assert plain_stats["frames"]["still"] == 0
        assert stats["frames"]["processed"] == plain_stats["frames"]["processed"]
        assert stats["sources"]["cam1"]["still"] == stats["frames"]["still"]
        if scene is ONE_BY_ONE:
            # 1.5 s between people, and the first one's walk in from the top edge.
            assert stats["frames"]["still"] >= 0.2 * stats["frames"]["processed"], stats
    assert what_happened(plain)[("line_crossed", "car", None, "gate", "in")] == 1


STANDING = Scene(
    640, 360, fps=15, duration_s=38.0, seed=3,
    objects=(SceneObject("person", ((-30, 220), (300, 220), (670, 220)), speed=110, size=90,
                         pauses=(0.0, 30.0)),),
)  # fmt: skip


@pytest.mark.timeout(180)
def test_a_person_standing_still_for_30_s_stays_one_object(tmp_path, redis_server, redis_client):
    clip = tmp_path / "standing.mp4"
    write_clip(STANDING, clip)
    events, stats = run_scene(clip, "standing", tmp_path, redis_server.url, redis_client,
                              {"motion": True})  # fmt: skip
    events = [e for e in events if e["type"] != "detections"]
    assert [e["type"] for e in events] == ["object_appeared", "object_left"], events
    left = events[1]["object"]
    assert left["dwell_s"] == pytest.approx(30 + 700 / 110, abs=1.5)
    # Standing 30 s is nearly 450 frames the model need not see; it still looks every 2 s.
    assert stats["frames"]["still"] >= 380, stats["frames"]


@pytest.mark.timeout(120)
def test_motion_only_inside_a_mask_spares_the_model_live(tmp_path, redis_server, redis_client):
    """Played as a camera (`--realtime`): the only thing that moves walks inside a masked
    corner, so the model sees only the first frame and one every detect_every_s."""
    scene = Scene(640, 360, fps=15, duration_s=8.0, seed=2, objects=(
        SceneObject("person", ((20, 80), (260, 80)), speed=30, size=80),
    ))  # fmt: skip
    clip = tmp_path / "corner.mp4"
    write_clip(scene, clip)
    corner = [[0, 0], [320, 0], [320, 180], [0, 180]]
    motion = {"masks": [corner], "detect_every_s": 2.0}
    _, stats = run_scene(clip, "corner", tmp_path, redis_server.url, redis_client,
                         {"motion": motion}, "--realtime")  # fmt: skip
    frames = stats["frames"]
    assert frames["processed"] == 120 and not frames["dropped"], frames
    assert frames["still"] == 120 - 4, frames  # detected at 0, 2, 4 and 6 s
    _, unmasked = run_scene(clip, "corner-unmasked", tmp_path, redis_server.url, redis_client,
                            {"motion": {"detect_every_s": 2.0}})  # fmt: skip
    assert unmasked["frames"]["still"] < 20, unmasked["frames"]
