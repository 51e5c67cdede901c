"""Objects, zones and lines end to end: rendered clip -> real detector -> tracker -> Redis.

`pipelines/parking-zones.yaml` runs on the repository's rendered parking clip, whose exact
ground truth (every object's box in every frame) is in `sample_videos/parking.json`. The
expected events are worked out from that ground truth here, independently of the rules'
code: the counts, directions and dwell times of the events must match it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    DEMO_CLIP,
    DEMO_CONFIDENCE,
    DEMO_MODEL,
    REPO,
    read_events,
    run_with_stats,
)
from tools.make_sample_video import write_clip
from tools.scenes import Scene, SceneObject

pytestmark = pytest.mark.integration

PIPELINE = REPO / "pipelines" / "parking-zones.yaml"
TRUTH = json.loads((REPO / "sample_videos" / "parking.json").read_text())
FPS = TRUTH["fps"]
LINE_X = 300.0  # midline: from (300, 0) to (300, 360)
BAND_PX = 4.0  # ground-truth anchors this close to a boundary decide nothing


def truth_tracks() -> dict[int, list[tuple[int, str, list[float]]]]:
    """object id -> [(frame index, label, xyxy)] for every frame the object is visible in."""
    tracks: dict[int, list[tuple[int, str, list[float]]]] = {}
    for index, boxes in sorted(TRUTH["boxes"].items(), key=lambda kv: int(kv[0])):
        for box in boxes:
            tracks.setdefault(box["object_id"], []).append((int(index), box["label"], box["xyxy"]))
    return tracks


def expected_crossings() -> Counter[tuple[str, str]]:
    """(label, direction) of every time an object's bottom centre goes across x = 300:
    right to left is `in` (the line runs top to bottom)."""
    out: Counter[tuple[str, str]] = Counter()
    for seen in truth_tracks().values():
        side = 0
        for _, label, (x1, _, x2, _) in seen:
            dx = (x1 + x2) / 2 - LINE_X
            if abs(dx) < BAND_PX:
                continue
            new = 1 if dx > 0 else -1
            if side and new != side:
                out[(label, "in" if new < 0 else "out")] += 1
            side = new
    return out


def expected_zone_visits() -> int:
    """People whose feet are in the lower-left corner (x < 300, y > 200) at some point."""
    visits = 0
    for seen in truth_tracks().values():
        inside = [
            (x1 + x2) / 2 < LINE_X - BAND_PX and y2 > 200 + BAND_PX
            for _, label, (x1, _, x2, y2) in seen
            if label == "person"
        ]
        pairs = zip([False, *inside], inside, strict=False)
        visits += sum(1 for before, now in pairs if now and not before)
    return visits


def run_parking(tmp_path: Path, redis_server: Any, redis_client: Any, max_fps: float | None):
    config = yaml.safe_load(PIPELINE.read_text())
    config["sources"][0]["uri"] = str(DEMO_CLIP)
    config["model"]["path"] = str(DEMO_MODEL)
    if max_fps is not None:
        config["sources"][0]["max_fps"] = max_fps
    pipeline = tmp_path / "parking.yaml"
    pipeline.write_text(yaml.safe_dump(config))
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert result.returncode == 0, result.stderr
    everything = read_events(redis_client, "streamer:parking:events")
    redis_client.delete("streamer:parking:events")
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    return [e for e in everything if e["type"] != "source_status"], stats


def test_the_truth_has_what_the_pipeline_shows():
    """The scene behind the figures below: 9 objects, 5 crossings, 2 visits to the corner."""
    assert len(truth_tracks()) == 9
    assert expected_crossings() == {
        ("person", "out"): 1, ("person", "in"): 1, ("car", "out"): 2, ("car", "in"): 1,
    }  # fmt: skip
    assert expected_zone_visits() == 2


@pytest.mark.parametrize("max_fps", [None, 7.5], ids=["every-frame", "every-other-frame"])
def test_counts_directions_and_dwell_match_the_ground_truth(
    tmp_path, redis_server, redis_client, max_fps
):
    events, stats = run_parking(tmp_path, redis_server, redis_client, max_fps)
    by_type = Counter(e["type"] for e in events)
    truth = truth_tracks()

    # One object_appeared and one object_left per object, with the same track id.
    assert by_type["object_appeared"] == by_type["object_left"] == len(truth)
    appeared = {e["object"]["track_id"] for e in events if e["type"] == "object_appeared"}
    left = {e["object"]["track_id"]: e for e in events if e["type"] == "object_left"}
    assert appeared == set(left)

    # Crossings by label and direction, and zone visits, exactly.
    crossings = Counter((e["object"]["label"], e["direction"])
                        for e in events if e["type"] == "line_crossed")  # fmt: skip
    assert crossings == expected_crossings()
    assert by_type["zone_entered"] == by_type["zone_exited"] == expected_zone_visits()
    assert all(e["zone"] == "lot_corner" and e["object"]["label"] == "person"
               for e in events if e["type"].startswith("zone_"))  # fmt: skip
    assert stats["lines"] == {"midline": {"in": 2, "out": 3}}
    assert stats["zones"] == {"lot_corner": {"entered": 2, "exited": 2, "inside": 0}}
    assert stats["objects"] == {"appeared": 9, "left": 9, "active": 0}

    # Dwell: how long each object was visible, within what the detector misses at the
    # frame's edges (an object less than a third in view) and, with max_fps, one step.
    truth_dwell = sorted((seen[-1][0] - seen[0][0]) / FPS for seen in truth.values())
    dwell = sorted(e["object"]["dwell_s"] for e in left.values())
    tolerance = 0.5 if max_fps is None else 0.65
    for measured, expected in zip(dwell, truth_dwell, strict=True):
        assert measured == pytest.approx(expected, abs=tolerance), (dwell, truth_dwell)
    for e in left.values():
        o = e["object"]
        assert o["last_seen"] - o["first_seen"] >= 0 and o["dwell_s"] >= 0


def one_after_another(
    walks: list[tuple[tuple[tuple[float, float], ...], dict[str, Any]]], speed: float, gap_s: float
) -> tuple[tuple[SceneObject, ...], float]:
    """People who each walk their path once, each starting `gap_s` after the one before has
    reached the end of its path; the objects and the time the last one is done."""
    objects, start = [], 0.0
    for path, looks in walks:
        objects.append(SceneObject("person", path, speed=speed, size=84, start_s=start, **looks))
        start += sum(math.dist(a, b) for a, b in itertools.pairwise(path)) / speed + gap_s
    return tuple(objects), start


# Six people who walk through the picture one after another, as in a doorway camera: in
# from one edge and out by another, each by another way; everyone is off the picture for
# over a second before the next comes in.
_WALKERS, _WALKERS_DONE_S = one_after_another([
    (((120, -50), (140, 410)), {}),
    (((-30, 200), (200, 410)), {"colour": (200, 60, 40)}),
    (((450, 410), (430, -50)), {"colour": (40, 200, 230), "colour2": (30, 30, 30)}),
    (((670, 170), (480, 410)), {"colour": (60, 160, 60)}),
    (((330, -50), (670, 200)), {"colour": (230, 230, 230), "colour2": (80, 130, 160)}),
    (((300, 410), (260, 200), (-30, 150)), {"colour": (150, 50, 150)}),
], speed=80, gap_s=1.5)  # fmt: skip
ONE_BY_ONE = Scene(640, 360, fps=15, duration_s=_WALKERS_DONE_S, seed=5, objects=_WALKERS)


def assert_one_track_per_person(clip: Path, model: Path, extra: str, people: int,
                                redis_url: str, client: Any, folder: Path) -> None:  # fmt: skip
    """`people` objects, each appearing then leaving before the next appears."""
    pipeline = folder / "people.yaml"
    pipeline.write_text(
        f"name: people\nsources:\n  - {{id: cam1, uri: '{clip}'}}\n"
        f"model:\n  path: '{model}'\n  classes: [person]\n{extra}"
    )
    result, stats = run_with_stats(pipeline, redis_url)
    assert result.returncode == 0, result.stderr
    events = read_events(client, "streamer:people:events")
    appeared = [e["object"]["track_id"] for e in events if e["type"] == "object_appeared"]
    left = [e["object"]["track_id"] for e in events if e["type"] == "object_left"]
    assert len(appeared) == people, appeared
    assert sorted(left) == sorted(appeared)
    assert stats["objects"] == {"appeared": people, "left": people, "active": 0}
    # One person at a time: each leaves before the next appears.
    order = [
        (e["type"], e["object"]["track_id"]) for e in events if e["type"].startswith("object_")
    ]
    assert order == [(kind, t) for t in appeared for kind in ("object_appeared", "object_left")]


def test_people_walking_through_one_by_one_give_one_track_each(
    tmp_path, redis_server, redis_client, demo_model
):
    """The demo detector on a rendered scene of people who walk through one after another:
    one object per person who walks through, and every object_appeared has its object_left
    by the end of the clip."""
    clip = tmp_path / "one-by-one.mp4"
    truth = write_clip(ONE_BY_ONE, clip)
    assert max(len(boxes) for boxes in truth.values()) == 1  # never two people at once
    people = len({b["object_id"] for boxes in truth.values() for b in boxes})
    assert people == len(ONE_BY_ONE.objects) == 6
    assert_one_track_per_person(clip, demo_model, DEMO_CONFIDENCE, people,
                                redis_server.url, redis_client, tmp_path)  # fmt: skip


PEOPLE_IN_PERSON_CLIP = 6  # counted by eye: six people walk in one after another


def test_real_clip_gives_one_track_per_person(tmp_path, redis_server, redis_client, person_clip,
                                              yolox_nano):  # fmt: skip
    """The same on real footage: YOLOX-nano on the real person clip."""
    assert_one_track_per_person(person_clip, yolox_nano, "", PEOPLE_IN_PERSON_CLIP,
                                redis_server.url, redis_client, tmp_path)  # fmt: skip


# A scene made for the hard cases, rendered here and run through the demo detector:
# a person walks up to the gate until its feet touch it and turns back; two people pass
# close to each other just where they cross the gate in opposite directions; a person walks
# along the top edge of the pad; a person walks into the pad and out again; a car drives
# across the gate.
GATE_X = 320.0
PAD = [[420, 200], [600, 200], [600, 340], [420, 340]]
BOUNDARIES = Scene(
    640, 360, fps=15, duration_s=12.0, seed=11, kerb_y=0.12,
    objects=(
        SceneObject("person", ((80, 220), (GATE_X, 220), (80, 250)), speed=60, size=84),
        SceneObject("person", ((30, 105), (610, 105)), speed=75, size=80, start_s=0.5,
                    colour=(200, 60, 40)),
        SceneObject("person", ((610, 140), (30, 140)), speed=75, size=84, start_s=0.5,
                    colour=(40, 200, 230), colour2=(30, 30, 30)),
        SceneObject("person", ((440, 158), (590, 158)), speed=25, size=84, start_s=2.0,
                    colour=(60, 160, 60)),
        SceneObject("person", ((700, 270), (510, 270), (370, 270)), speed=45, size=84,
                    start_s=3.0, colour=(230, 230, 230), colour2=(80, 130, 160)),
        SceneObject("car", ((800, 300), (-160, 300)), speed=110, size=170, start_s=4.0,
                    colour=(150, 70, 20)),
    ),
)  # fmt: skip


def test_touching_passing_and_crossing_in_a_rendered_scene(tmp_path, redis_server, redis_client):
    clip = tmp_path / "boundaries.mp4"
    truth = write_clip(BOUNDARIES, clip)
    visible = {b["object_id"] for boxes in truth.values() for b in boxes}
    pipeline = tmp_path / "boundaries.yaml"
    pipeline.write_text(yaml.safe_dump({
        "name": "boundaries",
        "sources": [{"id": "cam1", "uri": str(clip)}],
        "model": {"path": str(DEMO_MODEL), "confidence": 0.35},
        "zones": [{"name": "pad", "polygon": PAD, "labels": ["person"]}],
        "lines": [{"name": "gate", "points": [[GATE_X, 60], [GATE_X, 360]]}],
    }))  # fmt: skip
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert result.returncode == 0, result.stderr
    events = [e for e in read_events(redis_client, "streamer:boundaries:events")
              if e["type"] != "source_status"]  # fmt: skip

    by_type = Counter(e["type"] for e in events)
    assert by_type["object_appeared"] == by_type["object_left"] == len(visible) == 6
    # The touch gives nothing; the two who pass close cross once each, in their own
    # direction; the car crosses right to left (`in`: the gate runs top to bottom).
    crossings = Counter((e["object"]["label"], e["direction"])
                        for e in events if e["type"] == "line_crossed")  # fmt: skip
    assert crossings == {("person", "out"): 1, ("person", "in"): 1, ("car", "in"): 1}
    first_box = {e["object"]["track_id"]: e["object"]["bbox"] for e in events
                 if e["type"] == "object_appeared"}  # fmt: skip
    last_box = {e["object"]["track_id"]: e["object"]["bbox"] for e in events
                if e["type"] == "object_left"}  # fmt: skip
    for e in events:
        if e["type"] == "line_crossed":  # a swapped track would cross against its own way
            track = e["object"]["track_id"]
            moved_left = last_box[track][0] < first_box[track][0]
            assert e["direction"] == ("in" if moved_left else "out"), e
    # Only the person who walks in and out visits the pad; walking its edge is no visit.
    assert by_type["zone_entered"] == by_type["zone_exited"] == 1
    exited = next(e for e in events if e["type"] == "zone_exited")
    assert exited["object"]["dwell_s"] == pytest.approx(180 / 45, abs=0.5)  # 180 px at 45 px/s
    assert stats["lines"] == {"gate": {"in": 2, "out": 1}}


def test_detections_carry_the_track_id_of_their_object(tmp_path, redis_server, redis_client):
    config = yaml.safe_load(PIPELINE.read_text())
    config["sources"][0]["uri"] = str(DEMO_CLIP)
    config["model"]["path"] = str(DEMO_MODEL)
    config["events"]["emit"] = ["object_appeared", "object_left", "detections"]
    pipeline = tmp_path / "parking.yaml"
    pipeline.write_text(yaml.safe_dump(config))
    result, _stats = run_with_stats(pipeline, redis_server.url)
    assert result.returncode == 0, result.stderr
    events = read_events(redis_client, "streamer:parking:events")
    by_frame = {e["frame"]["index"]: e["objects"] for e in events if e["type"] == "detections"}
    appeared = [e for e in events if e["type"] == "object_appeared"]
    tracked = {o["track_id"] for boxes in by_frame.values() for o in boxes} - {None}
    assert tracked == {e["object"]["track_id"] for e in appeared}
    for e in appeared:  # the box that made the object is in its frame's detections, with its id
        boxes = by_frame[e["frame"]["index"]]
        mine = [o for o in boxes if o["track_id"] == e["object"]["track_id"]]
        assert [o["bbox"] for o in mine] == [e["object"]["bbox"]]
    assert all(o["confidence"] >= config["model"]["confidence"]
               for boxes in by_frame.values() for o in boxes)  # fmt: skip
