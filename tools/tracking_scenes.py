"""Rendered scenes that are hard for a tracker in the ways real scenes are, with the true
identity of every box, and the demo detector's boxes on them.

Each scene isolates one difficulty: people walking behind a pillar for 1-3 s, paths that
cross, people and a car that stop and go on, groups that walk together and split, and a
busy street of everything at once. `flickered` makes the detector's output worse the way
real detectors are: boxes missing in some frames, and a class that flickers between
similar labels (car and truck). The scenes back both the tracker tests (exact
expectations) and benchmarks/tracker_quality.py (MOT metrics against the open trackers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamer.analytics.boxes import letterbox_geometry, nms, unletterbox
from streamer.models import Model
from streamer.runtime.messages import Detections, Frame
from streamer.stages.preprocess import tensor_of
from tools.scenes import Occluder, Scene, SceneObject, render_frame

WIDTH, HEIGHT, FPS = 640, 360, 15.0
PILLAR = Occluder((290, 0, 370, HEIGHT))
# The labels of a flickered scene's detections: trucks are cars the detector misnamed.
FLICKER_LABELS = ("person", "car", "truck")
DETECTOR_FLOOR = 0.1  # boxes this weak still reach the tracker (its second round)


def person(path: tuple[tuple[float, float], ...], speed: float, start_s: float = 0.0,
           colour: tuple[int, int, int] = (40, 40, 200), pauses: tuple[float, ...] = ()
           ) -> SceneObject:  # fmt: skip
    return SceneObject("person", path, speed, 80, colour, start_s=start_s, pauses=pauses)


def pillar() -> Scene:
    """Three people pass behind a pillar 80 px wide, hidden (less than 30 % visible) for
    about 1.1, 1.7 and 2.7 s."""
    walkers = (
        person(((-40, 240), (680, 240)), 60),
        person(((680, 250), (-40, 250)), 40, start_s=8, colour=(40, 160, 40)),
        person(((120, 230), (560, 230)), 25, start_s=20, colour=(200, 120, 40)),
    )
    return Scene(WIDTH, HEIGHT, FPS, 38.0, walkers, seed=3, occluders=(PILLAR,))


def crossing() -> Scene:
    """Two people walk into each other (one passes in front of the other), then two cross
    on diagonals."""
    walkers = (
        person(((-40, 226), (680, 226)), 50),
        person(((680, 238), (-40, 238)), 50, colour=(40, 160, 40)),
        person(((-40, 150), (680, 330)), 60, start_s=14, colour=(200, 120, 40)),
        person(((-40, 330), (680, 150)), 60, start_s=14, colour=(160, 40, 160)),
    )
    return Scene(WIDTH, HEIGHT, FPS, 28.0, walkers, seed=5)


def stop_and_go() -> Scene:
    """A person stops for 5 s, another walks close past her, and a car stops for 4 s."""
    objects = (
        person(((-40, 262), (300, 262), (680, 262)), 45, pauses=(0, 5)),
        person(((680, 272), (-40, 272)), 55, start_s=6, colour=(40, 160, 40)),
        SceneObject(
            "car",
            ((-100, 130), (260, 130), (760, 130)),
            70,
            130,
            (30, 30, 160),
            start_s=2,
            pauses=(0, 4),
        ),
    )
    return Scene(WIDTH, HEIGHT, FPS, 26.0, objects, seed=7)


def groups() -> Scene:
    """Three people walk side by side and split three ways; then two walk in from either
    side, meet, and walk on together."""
    split_at = (320, 240)
    objects = (
        person(((-40, 236), split_at, (680, 150)), 45),
        person(((-15, 240), (345, 244), (680, 244)), 45, colour=(40, 160, 40)),
        person(((-65, 244), (295, 248), (680, 330)), 45, colour=(200, 120, 40)),
        person(((-40, 200), (320, 205), (680, 210)), 50, start_s=17, colour=(160, 40, 160)),
        person(((680, 212), (340, 207), (690, 212)), 50, start_s=17, colour=(40, 200, 200)),
    )
    return Scene(WIDTH, HEIGHT, FPS, 36.0, objects, seed=9)


def busy() -> Scene:
    """A street of people and cars coming and going at random, a pillar in the middle."""
    scene = Scene.random(11, WIDTH, HEIGHT, n_objects=14, duration_s=40.0, fps=FPS)
    return Scene(WIDTH, HEIGHT, FPS, scene.duration_s, scene.objects, scene.seed,
                 scene.kerb_y, occluders=(Occluder((300, 120, 340, HEIGHT)),))  # fmt: skip


SCENES: dict[str, Callable[[], Scene]] = {
    "pillar": pillar,
    "crossing": crossing,
    "stop_and_go": stop_and_go,
    "groups": groups,
    "busy": busy,
}


@dataclass(frozen=True)
class Annotated:
    """A rendered scene: per frame, its time, the true boxes (object id, class id, xyxy)
    and the detector's boxes."""

    name: str
    times_s: list[float]
    truth: list[list[tuple[int, int, tuple[float, float, float, float]]]]
    detections: list[Detections]


def detect(model: Model, image: np.ndarray, confidence: float, iou: float = 0.45) -> Detections:
    """The model's boxes on one BGR image, as the pipeline makes them (letterbox, decode,
    NMS, back to source pixels)."""
    hw = model.input_hw_for(image.shape[:2])
    frame = Frame("scene", 0, None, 0, 0.0, None, image, 0.0)
    output = model.run(tensor_of(frame, model.spec, hw)[None])[0]
    xyxy, scores, classes = model.candidates(output, hw, confidence)
    keep = nms(xyxy, scores, classes, iou, 300)
    lb = letterbox_geometry(image.shape[:2], hw, model.spec.centered)
    return Detections(
        unletterbox(xyxy[keep], lb, image.shape[:2]),
        scores[keep].astype(np.float32),
        classes[keep].astype(np.int64),
    )


def annotate(name: str, scene: Scene, model: Model) -> Annotated:
    """Render every frame of `scene` and run the detector on it."""
    times, truth, detections = [], [], []
    for i in range(round(scene.duration_s * scene.fps)):
        t = i / scene.fps
        image, boxes = render_frame(scene, t)
        times.append(t)
        truth.append([(b.object_id, b.class_id, b.xyxy) for b in boxes])
        detections.append(detect(model, image, DETECTOR_FLOOR))
    return Annotated(name, times, truth, detections)


def flickered(scene: Annotated, seed: int = 0, missing: float = 0.2, misnamed: float = 0.3
              ) -> Annotated:  # fmt: skip
    """The scene's detections with each box missing at random (`missing` of them) and each
    car box called a truck at random (`misnamed` of them)."""
    rng = np.random.default_rng(seed)
    car, truck = FLICKER_LABELS.index("car"), FLICKER_LABELS.index("truck")
    worse = []
    for d in scene.detections:
        kept = rng.random(len(d)) >= missing
        classes = d.class_id[kept].copy()
        classes[(classes == car) & (rng.random(len(classes)) < misnamed)] = truck
        worse.append(Detections(d.xyxy[kept], d.confidence[kept], classes))
    return Annotated(f"{scene.name}_flicker", scene.times_s, scene.truth, worse)
