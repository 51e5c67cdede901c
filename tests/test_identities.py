"""Identities through what makes real scenes hard, with the real demo detector on rendered
scenes whose true identities are known (tools/tracking_scenes.py): people behind a
pillar for 1-3 s keep their ids, people whose paths cross keep theirs, and frames dropped
under live overload split no more tracks than an offline run of the same clip.
benchmarks/tracker_quality.py measures the same scenes against the open trackers."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamer.analytics.boxes import match_by_iou
from streamer.analytics.tracking import Tracker, TrackerSettings
from streamer.config.schema import TrackingConfig
from streamer.events.event import Event, EventType
from streamer.models import Model
from streamer.pipeline.lifecycle import Pipeline
from tests.conftest import DEMO_CONFIDENCE, sources_pipeline
from tools.make_sample_video import write_clip
from tools.tracking_scenes import HEIGHT, WIDTH, Annotated, annotate, crossing, pillar

pytestmark = pytest.mark.timeout(180)

CONFIDENCE = 0.35  # the demo pipeline's


@pytest.fixture(scope="module")
def model(demo_model: Path) -> Model:
    return Model.load(demo_model, providers=("cpu",), workers=1)


def ids_per_object(scene: Annotated) -> dict[int, list[int]]:
    """The default tracker on the scene's detections: per true object, the confirmed track
    id of each frame it is seen in (its box matched at IoU >= 0.5)."""
    settings = TrackerSettings.from_config(TrackingConfig(), CONFIDENCE, ["person", "car"])
    tracker = Tracker(settings)
    ids: dict[int, list[int]] = {}
    for t, detections, truth in zip(scene.times_s, scene.detections, scene.truth, strict=True):
        update = tracker.update(t, detections, (HEIGHT, WIDTH))
        tracks = [track for track in update.seen if track.confirmed]
        if not tracks or not truth:
            continue
        boxes = np.array([tr.box for tr in tracks])
        true_boxes = np.array([b for *_, b in truth])
        everything = np.zeros(len(tracks), np.int64), np.zeros(len(truth), np.int64)
        for row, column, _ in match_by_iou(boxes, everything[0], true_boxes, everything[1], 0.5):
            ids.setdefault(truth[column][0], []).append(tracks[row].track_id)
    return ids


def assert_each_keeps_its_id(ids: dict[int, list[int]], objects: int) -> None:
    """Each object has the same id when first and last seen (a frame or two in between
    may go to the one in front of it while they overlap), and no two share one."""
    assert sorted(ids) == list(range(objects))
    first_and_last = {}
    for obj, seen in ids.items():
        start, end = (
            Counter(seen[:15]).most_common(1)[0][0],
            Counter(seen[-15:]).most_common(1)[0][0],
        )
        assert start == end, (obj, seen)
        first_and_last[obj] = start
    assert len(set(first_and_last.values())) == objects
    # The object's own id most of the time: while two overlap, the detector often sees one
    # box, and the track of that box may be scored against either of them.
    for obj, seen in ids.items():
        assert seen.count(first_and_last[obj]) >= 0.85 * len(seen), (obj, Counter(seen))


@pytest.fixture(scope="module")
def pillar_scene(model: Model) -> Annotated:
    return annotate("pillar", pillar(), model)


def test_people_behind_a_pillar_keep_their_ids(pillar_scene):
    """Hidden 1.2, 1.7 and 2.9 s (under 30 % visible: no true box, and the detector sees
    none), each comes out the other side as itself."""
    scene = pillar_scene
    hidden = []
    for obj in range(3):
        seen = [i for i, truth in enumerate(scene.truth) if any(o == obj for o, *_ in truth)]
        hidden.append(max(b - a for a, b in itertools.pairwise(seen)) / 15)
    assert [round(h, 1) for h in hidden] == [1.3, 1.8, 2.9]
    assert_each_keeps_its_id(ids_per_object(scene), 3)


def test_people_whose_paths_cross_keep_their_ids(model):
    """Two walk into each other and pass, one in front of the other; two cross on
    diagonals."""
    assert_each_keeps_its_id(ids_per_object(annotate("crossing", crossing(), model)), 4)


# Steps between the frames a camera's tracker saw, in frames of 15 fps, and how often
# each came, measured on the most starved cameras of twelve in the live overload run
# below when a shared queue served first come first (harsher than now that cameras
# take turns).
STEPS_UNDER_OVERLOAD = {1: 100, 2: 32, 3: 16, 4: 8, 5: 6, 6: 2, 7: 1, 8: 1, 11: 1}


def objects_counted(scene: Annotated, looked_at: list[int]) -> int:
    settings = TrackerSettings.from_config(TrackingConfig(), CONFIDENCE, ["person", "car"])
    tracker = Tracker(settings)
    return sum(
        len(tracker.update(scene.times_s[i], scene.detections[i], (HEIGHT, WIDTH)).confirmed)
        for i in looked_at
    )


def test_frames_dropped_in_bursts_split_no_track(pillar_scene):
    """The tracker on the first 20 s of the pillar scene (two people, one hidden, then the
    two passing each other at the picture's edge) seeing only some frames, in the bursty
    pattern measured under overload: 60 drawings, each counts the two people. A box seen
    last as someone came out from behind the pillar, followed by a long step, or a track
    not yet an object whose next frame came late, used to split a track in about one
    drawing in 40 (3 of these 60)."""
    frames = 300
    assert objects_counted(pillar_scene, list(range(frames))) == 2
    rng = np.random.default_rng(0)
    steps = np.repeat(list(STEPS_UNDER_OVERLOAD), list(STEPS_UNDER_OVERLOAD.values()))
    counts = []
    for _ in range(60):
        looked_at = np.cumsum(rng.choice(steps, size=frames)) - 1
        counts.append(objects_counted(pillar_scene, looked_at[looked_at < frames].tolist()))
    assert counts == [2] * 60


@pytest.fixture(scope="module")
def pillar_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clip = tmp_path_factory.mktemp("pillar") / "pillar.mp4"
    write_clip(pillar(), clip)
    return clip


def object_events(path: Path, **overrides: object) -> tuple[list[Event], dict[str, object]]:
    events: list[Event] = []
    pipeline = Pipeline.from_file(path, on_event=events.append, **overrides)  # type: ignore[arg-type]
    pipeline.run()
    return [e for e in events if e.type in (EventType.OBJECT_APPEARED, EventType.OBJECT_LEFT)], (
        pipeline.stats()
    )


def test_the_pillar_clip_gives_one_object_per_person(tmp_path, pillar_clip, demo_model):
    path = sources_pipeline(
        tmp_path, "pillar", {"cam1": str(pillar_clip)}, demo_model,
        DEMO_CONFIDENCE + "sink: none\n", emit="[object_appeared, object_left]",
    )  # fmt: skip
    events, _ = object_events(path)
    assert Counter(e.type for e in events) == {"object_appeared": 3, "object_left": 3}
    dwell = sorted(e.object.dwell_s or 0 for e in events if e.type is EventType.OBJECT_LEFT)
    # Each was in the picture 11-18 s, hidden behind the pillar included.
    assert dwell[0] > 10 and dwell[-1] < 19, dwell


def test_frames_dropped_under_live_overload_split_no_more_tracks_than_offline(
    tmp_path, pillar_clip, demo_model
):
    """Sixteen cameras of the pillar clip, paced live at once, one model worker of one
    thread, for the first 20 s (the first two people): the machine cannot look at every
    frame (about two in five are dropped; the cameras take turns, so each is looked at
    every 0.2-0.3 s at worst), yet each counts the people an offline run of the same
    frames counts. One camera may be one off: the test above gives the tracker harsher
    dropping (steps up to 0.73 s) and found no split in 60 drawings, but one camera
    starved longer while two people pass each other at the picture's edge could still
    split or join a track there."""
    offline = sources_pipeline(
        tmp_path, "offline", {"cam1": str(pillar_clip)}, demo_model,
        DEMO_CONFIDENCE + "sink: none\n", emit="[object_appeared, object_left]",
    )  # fmt: skip
    events, _ = object_events(offline, max_frames=300)
    people = Counter(e.type for e in events)["object_appeared"]
    assert people == 2
    cameras = {f"cam{i}": str(pillar_clip) for i in range(16)}
    live = sources_pipeline(
        tmp_path, "live", cameras, demo_model,
        DEMO_CONFIDENCE + "  workers: 1\n  threads: 1\nsink: none\n",
        emit="[object_appeared, object_left]",
    )  # fmt: skip
    events, stats = object_events(live, realtime=True, max_frames=300)
    frames = stats["frames"]
    assert isinstance(frames, dict)
    assert sum(frames["dropped"].values()) >= 0.2 * frames["decoded"], frames
    appeared = Counter(e.source for e in events if e.type is EventType.OBJECT_APPEARED)
    off = {camera: appeared[camera] - people for camera in cameras if appeared[camera] != people}
    assert len(off) <= 1 and all(abs(d) == 1 for d in off.values()), appeared
