"""Tracking, lifecycle, zones and lines against scenes with exactly known ground truth.

Boxes come straight from the scene's object paths (with a little jitter, as a detector
gives), so these tests judge the tracker and the rules alone; tests/test_objects.py runs
the same kind of scene through the real detector and pipeline.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from streamer.analytics.geometry import polygon_contour
from streamer.analytics.rules import LineRule, ObjectRules, Occurrence, ZoneRule, rules_by_source
from streamer.analytics.tracking import Tracker, TrackerSettings, class_kinds
from streamer.config import load_config, parse_config
from streamer.errors import ConfigError
from streamer.events.event import Anchor, LeftReason
from streamer.pipeline.build import check
from streamer.runtime.messages import Detections, Frame
from tests.conftest import DEMO_CLIP, one_source_pipeline
from tools.scenes import SceneObject

FPS = 15.0
WIDTH, HEIGHT = 640, 360
DOOR = [(400.0, 150.0), (600.0, 150.0), (600.0, 330.0), (400.0, 330.0)]  # a zone
GATE = ((320.0, 100.0), (320.0, 350.0))  # a vertical line; moving left to right is `out`
SETTINGS = TrackerSettings(high_confidence=0.5, confirm_hits=3, lost_after_s=1.0)


def person(path: list[tuple[float, float]], start_s: float = 0.0, speed: float = 60) -> SceneObject:
    return SceneObject("person", path=tuple(path), speed=speed, size=80, start_s=start_s)


def box_of(obj: SceneObject, t_s: float) -> tuple[float, float, float, float] | None:
    state = obj.state(t_s)
    if state is None:
        return None
    x, y, _, _ = state
    w, h = obj.box_size
    return x - w / 2, y - h / 2, x + w / 2, y + h / 2


def frame_at(index: int) -> Frame:
    t = index / FPS
    return Frame("cam1", index, t, 0, 1_764_000_000.0 + t, None, np.zeros((1, 1, 3), np.uint8), t)


def run_scene(
    objects: list[SceneObject],
    duration_s: float,
    drop: float = 0.0,
    seed: int = 0,
    jitter_px: float = 1.5,
) -> tuple[list[Occurrence], dict[int, list[float]]]:
    """Feed the scene's boxes through tracker and rules; drop a fraction of frames at
    random. Returns the occurrences and, per object, the times it was actually shown."""
    rng = np.random.default_rng(seed)
    rules = ObjectRules(
        Tracker(SETTINGS),
        [ZoneRule("door", polygon_contour(DOOR), None, Anchor.BOTTOM_CENTER, 0.1)],
        [LineRule("gate", GATE[0], GATE[1], None, Anchor.BOTTOM_CENTER, 0.1)],
    )
    out: list[Occurrence] = []
    shown: dict[int, list[float]] = {i: [] for i in range(len(objects))}
    for index in range(int(duration_s * FPS)):
        if rng.random() < drop:
            continue
        frame = frame_at(index)
        boxes, scores, classes = [], [], []
        for i, obj in enumerate(objects):
            box = box_of(obj, frame.time_s)
            if box is not None:
                boxes.append(np.array(box) + rng.uniform(-jitter_px, jitter_px, 4))
                scores.append(rng.uniform(0.6, 0.95))
                classes.append(obj.class_id)
                shown[i].append(frame.time_s)
        detections = Detections(
            np.array(boxes, np.float32).reshape(-1, 4),
            np.array(scores, np.float32),
            np.array(classes, np.int64),
        )
        out += rules.on_frame(frame, detections)
    return out + rules.on_end(LeftReason.END_OF_STREAM), shown


def counts(occurrences: list[Occurrence]) -> Counter[tuple[str, str | None]]:
    return Counter((o.type, o.direction) for o in occurrences)


# Person 0 walks right across the gate and into the door zone, then on out of it; person 1
# walks left across the gate from the other side; person 2 walks up to the gate, touches it
# and turns back; person 3 stands (walks slowly) inside the zone the whole time it is seen.
SCENE = [
    person([(100, 200), (620, 200)], speed=80),
    person([(560, 80), (60, 80)], start_s=1.0, speed=70),
    person([(120, 260), (320, 260), (150, 300)], start_s=0.5, speed=60),
    person([(480, 250), (520, 250)], start_s=2.0, speed=10),
]


@pytest.mark.parametrize(("drop", "seed"), [(0.0, 0), (0.3, 1), (0.3, 2), (0.5, 3)])
def test_counts_directions_and_dwell_match_the_ground_truth(drop, seed):
    occurrences, shown = run_scene(SCENE, duration_s=9.0, drop=drop, seed=seed)
    assert counts(occurrences) == {
        ("object_appeared", None): 4,
        ("object_left", None): 4,
        ("line_crossed", "out"): 1,  # person 0, left to right
        ("line_crossed", "in"): 1,  # person 1, right to left (its anchor is above the gate)
        ("zone_entered", None): 2,  # person 0 walking in, person 3 seen inside from the start
        ("zone_exited", None): 2,  # person 0 walking out, person 3 leaving the scene inside
    }, counts(occurrences)
    crossings = {o.object.track_id: o.direction for o in occurrences if o.type == "line_crossed"}
    assert len(crossings) == 2  # two different objects, one crossing each
    left = sorted(
        (o for o in occurrences if o.type == "object_left"), key=lambda o: o.object.first_seen_at
    )
    expected = sorted(shown.values(), key=lambda times: times[0])
    for occurrence, times in zip(left, expected, strict=True):
        assert occurrence.object.dwell_s == pytest.approx(times[-1] - times[0], abs=1e-6)


def test_person_one_crosses_the_gate_where_the_segment_is():
    """Person 1 walks at y = 80: its feet (y = 120) pass x = 320 inside the gate segment."""
    occurrences, _ = run_scene(SCENE[1:2], duration_s=9.0)
    assert [(o.type, o.direction) for o in occurrences if o.type == "line_crossed"] == [
        ("line_crossed", "in")
    ]


def test_walking_around_the_end_of_a_line_is_no_crossing():
    around = person([(250, 20), (400, 20)], speed=80)  # feet at y = 60, above the gate's end
    occurrences, _ = run_scene([around], duration_s=4.0)
    assert not [o for o in occurrences if o.type == "line_crossed"]


def test_jitter_on_a_boundary_gives_no_burst_of_events():
    """Feet right on the gate and on the zone's edge, jittering by 3 px, for 5 s."""
    on_line = person([(320, 260), (320.5, 260)], speed=0.1)
    on_edge = person([(500, 290), (500.5, 290)], speed=0.1)  # feet at y = 330: the edge
    occurrences, _ = run_scene([on_line, on_edge], duration_s=5.0, jitter_px=3.0)
    assert counts(occurrences) == {("object_appeared", None): 2, ("object_left", None): 2}


def test_objects_passing_close_keep_their_tracks():
    """Two people walk towards each other 12 px apart and pass: each keeps its track, so
    each crosses the gate once, in its own direction."""
    a = person([(100, 200), (560, 200)], speed=90)
    b = person([(560, 212), (100, 212)], speed=90)
    for seed in range(3):
        occurrences, _ = run_scene([a, b], duration_s=6.0, drop=0.2, seed=seed)
        crossings = [(o.object.track_id, o.direction) for o in occurrences
                     if o.type == "line_crossed"]  # fmt: skip
        assert sorted(d for _, d in crossings) == ["in", "out"]
        assert len({t for t, _ in crossings}) == 2
        assert counts(occurrences)[("object_appeared", None)] == 2


def test_a_box_seen_once_or_twice_is_no_object():
    flicker = person([(300, 200), (301, 200)], speed=1)
    rules = ObjectRules(Tracker(SETTINGS), [], [])
    box = np.array([box_of(flicker, 0.0)], np.float32)
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    seen = Detections(box, np.array([0.9], np.float32), np.array([0], np.int64))
    out = rules.on_frame(frame_at(0), seen) + rules.on_frame(frame_at(1), seen)
    for i in range(2, 40):
        out += rules.on_frame(frame_at(i), empty)
    assert out + rules.on_end(LeftReason.END_OF_STREAM) == []


def test_dropped_frames_do_not_end_tracks_within_lost_after():
    """A gap of 0.9 s (under lost_after_s) keeps the track; 1.2 s ends it and a new one starts."""
    walker = person([(100, 200), (600, 200)], speed=40)
    rules = ObjectRules(Tracker(SETTINGS), [], [])

    def detections(t: float) -> Detections:
        return Detections(
            np.array([box_of(walker, t)], np.float32),
            np.array([0.9], np.float32),
            np.array([0], np.int64),
        )

    out: list[Occurrence] = []
    kept = [i for i in range(150) if not (30 <= i < 43) and not (80 <= i < 98)]
    for i in kept:  # gaps: frames 30-42 (0.87 s) and 80-97 (1.2 s)
        out += rules.on_frame(frame_at(i), detections(i / FPS))
    out += rules.on_end(LeftReason.END_OF_STREAM)
    assert [o.type for o in out] == ["object_appeared", "object_left"] * 2
    assert out[1].object.dwell_s == pytest.approx(79 / FPS)
    # The first left the picture for longer than lost_after_s; the second was there at the end.
    assert [out[1].reason, out[3].reason] == [LeftReason.LOST, LeftReason.END_OF_STREAM]


def test_memory_stays_bounded_over_many_objects():
    rules = ObjectRules(Tracker(SETTINGS), [], [])
    rng = np.random.default_rng(0)
    for i in range(3000):  # a new random box every frame: many short-lived tracks
        x, y = rng.uniform(0, 600), rng.uniform(0, 300)
        d = Detections(
            np.array([[x, y, x + 30, y + 60]], np.float32),
            np.array([0.9], np.float32),
            np.array([0], np.int64),
        )
        rules.on_frame(frame_at(i), d)
    # A box not seen again is dropped once unseen for TENTATIVE_GAP_S (0.25 s, 4 frames).
    assert len(rules._tracker.tracks) <= 5
    assert len(rules._objects) <= 5


def test_fifty_objects_keep_fifty_tracks():
    """The benchmark's load (benchmarks/tracking.py): 50 objects moving together."""
    rng = np.random.default_rng(0)
    starts = rng.uniform([20, 20], [560, 260], (50, 2))
    rules = ObjectRules(
        Tracker(SETTINGS),
        [ZoneRule("door", polygon_contour(DOOR), None, Anchor.BOTTOM_CENTER, 0.1)],
        [LineRule("gate", GATE[0], GATE[1], None, Anchor.BOTTOM_CENTER, 0.1)],
    )
    for i in range(30):
        xy = starts + i * 2.0
        boxes = np.concatenate([xy, xy + np.array([30, 60])], axis=1).astype(np.float32)
        rules.on_frame(frame_at(i), Detections(boxes, np.full(50, 0.9, np.float32),
                                               np.zeros(50, np.int64)))  # fmt: skip
    assert rules.active_objects == 50
    assert sorted(t.track_id for t in rules._tracker.tracks) == list(range(1, 51))


def test_a_zone_and_a_line_of_the_same_name_keep_their_own_sources():
    config = parse_config({
        "name": "p", "sources": [{"id": "a", "uri": "a.mp4"}, {"id": "b", "uri": "b.mp4"}],
        "model": {"path": "m.onnx"},
        "zones": [{"name": "gate", "polygon": [[0, 0], [9, 0], [9, 9]], "sources": ["a"]}],
        "lines": [{"name": "gate", "points": [[0, 0], [9, 9]], "sources": ["b"]}],
    }, "p.yaml")  # fmt: skip

    zones = [ZoneRule.from_config(z, None) for z in config.zones]
    lines = [LineRule.from_config(ln, None) for ln in config.lines]
    rules = rules_by_source(config, zones, lines, ["person"])
    assert [z.name for z in rules["a"]._zones] == ["gate"] and rules["a"]._lines == []
    assert rules["b"]._zones == [] and [ln.name for ln in rules["b"]._lines] == ["gate"]


PICTURE = np.zeros((HEIGHT, WIDTH, 3), np.uint8)


def picture_frame(index: int) -> Frame:
    """A frame of the scene's real size: the tracker tells its edge from its inside."""
    t = index / FPS
    return Frame("cam1", index, t, 0, 1_764_000_000.0 + t, None, PICTURE, t)


def one_box(box: tuple[float, float, float, float] | None, class_id: int = 0) -> Detections:
    if box is None:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                          np.zeros(0, np.int64))  # fmt: skip
    return Detections(np.array([box], np.float32), np.array([0.8], np.float32),
                      np.array([class_id], np.int64))  # fmt: skip


def test_an_object_hidden_inside_the_picture_comes_back_as_itself():
    """Unseen for 2.5 s in the middle of the picture (behind a pillar), a walker is the
    same object when it comes out, though it reappears 100 px on and its box has shrunk
    to the part that shows; its dwell covers the time it was hidden."""
    walker = person([(60, 200), (600, 200)], speed=40)
    rules = ObjectRules(Tracker(SETTINGS), [], [])
    out: list[Occurrence] = []
    for i in range(int(13 * FPS)):
        box = box_of(walker, i / FPS)
        t = i / FPS
        if 5.0 <= t < 7.5:
            box = None  # behind the pillar
        elif 4.6 <= t < 5.0 and box is not None:
            box = (box[0], box[1], box[2] - (t - 4.6) * 60, box[3])  # going in: it narrows
        out += rules.on_frame(picture_frame(i), one_box(box))
    out += rules.on_end(LeftReason.END_OF_STREAM)
    assert [o.type for o in out] == ["object_appeared", "object_left"]
    assert out[1].object.dwell_s == pytest.approx(13 - 1 / FPS, abs=0.1)


def test_an_object_that_left_through_the_edge_is_gone_after_lost_after_s():
    """Out through the right edge, back 1.5 s later: two objects (max_hidden_s is for
    objects hidden inside the picture, not for those that left it)."""
    walker = person([(500, 200), (660, 200)], speed=80)
    back = person([(660, 200), (500, 200)], speed=80, start_s=3.5)
    rules = ObjectRules(Tracker(SETTINGS), [], [])
    out: list[Occurrence] = []
    for i in range(int(6 * FPS)):
        t = i / FPS
        box = box_of(walker, t) or box_of(back, t)
        if box is not None and box[2] > WIDTH:  # the part in the picture
            box = (box[0], box[1], WIDTH, box[3]) if box[0] < WIDTH - 10 else None
        out += rules.on_frame(picture_frame(i), one_box(box))
    assert [o.type for o in out] == ["object_appeared", "object_left", "object_appeared"]


def test_an_object_coming_in_from_the_edge_and_hidden_at_once_comes_back_as_itself():
    """Walking in through the left edge, a person is seen for 0.7 s, still touching the
    edge, then unseen for 1.5 s (frames dropped, or someone in front): longer than
    lost_after_s, yet one object, since it was coming in, not leaving."""
    walker = person([(-20, 200), (600, 200)], speed=60)
    rules = ObjectRules(Tracker(SETTINGS), [], [])
    out: list[Occurrence] = []
    for i in range(int(5 * FPS)):
        t = i / FPS
        box = box_of(walker, t)
        if box is not None:
            box = (max(box[0], 0.0), box[1], box[2], box[3])  # the part in the picture
        if 0.7 <= t < 2.2:
            box = None
        out += rules.on_frame(picture_frame(i), one_box(box))
    assert [o.type for o in out] == ["object_appeared"]


@pytest.mark.parametrize("groups", [None, []])
def test_a_label_that_flickers_between_kinds_of_car_is_one_object_with_the_majority_label(groups):
    """A car the detector calls a truck in a third of its frames, last of all in its final
    one: with the default groups one object, reported as a car all along; with no groups
    (class_groups: []) it is counted twice, as a car and as a truck."""
    labels = ["person", "car", "truck"]
    config = parse_config({"name": "p", "sources": [{"id": "a", "uri": "a.mp4"}],
                           "model": {"path": "m.onnx"},
                           "tracking": {} if groups is None else {"class_groups": groups}},
                          "p.yaml")  # fmt: skip
    settings = TrackerSettings.from_config(config.tracking, 0.5, labels)
    car = SceneObject("car", ((40, 200), (600, 200)), speed=60, size=120)
    rules = ObjectRules(Tracker(settings), [], [])
    out: list[Occurrence] = []
    frames = int(8 * FPS)
    for i in range(frames):
        called = 2 if i % 3 == 0 or i == frames - 1 else 1
        out += rules.on_frame(picture_frame(i), one_box(box_of(car, i / FPS), called))
    out += rules.on_end(LeftReason.END_OF_STREAM)
    appeared = [o for o in out if o.type == "object_appeared"]
    if groups is None:
        assert [o.type for o in out] == ["object_appeared", "object_left"]
        assert [o.object.class_id for o in out] == [1, 1]  # car, not its last box's truck
    else:
        assert sorted(o.object.class_id for o in appeared) == [1, 2]


def test_class_kinds_join_the_groups_the_model_has():
    labels = ["person", "bus", "car", "bicycle", "motorcycle"]
    assert class_kinds([["car", "truck", "bus"]], labels) == (0, 1, 1, 3, 4)
    assert class_kinds([["bicycle", "motorcycle"], ["car", "bus"]], labels) == (0, 1, 1, 3, 3)
    assert class_kinds([], labels) == (0, 1, 2, 3, 4)


def test_class_groups_name_labels_the_model_has(tmp_path, demo_model):
    path = one_source_pipeline(
        tmp_path,
        "groups",
        DEMO_CLIP,
        demo_model,
        extra="tracking: {class_groups: [[car, lorry]]}\n",
    )
    with pytest.raises(ConfigError, match=r"tracking.class_groups\[0\]: unknown label 'lorry'"):
        check(load_config(path))
