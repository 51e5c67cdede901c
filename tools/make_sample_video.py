"""Renders the demo clip ``sample_videos/parking.mp4`` and its ground truth ``parking.json``.

The scene is written out by hand so the clip always shows the same thing: a parked car, people
walking along the sidewalk and across the lot, and cars driving through in both directions.

    python -m tools.make_sample_video [--out-dir sample_videos]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tools.scenes import Scene, SceneObject, render_frame

WIDTH, HEIGHT, FPS, DURATION_S = 640, 360, 15, 20.0

PARKING = Scene(
    WIDTH,
    HEIGHT,
    FPS,
    DURATION_S,
    seed=7,
    kerb_y=0.25,
    objects=(
        # People: one on the sidewalk for the whole clip, others crossing the lot and turning.
        SceneObject(
            "person",
            ((10, 52), (690, 52)),
            speed=36,
            size=78,
            colour=(40, 40, 200),
            colour2=(110, 60, 30),
            skin=(120, 160, 210),
        ),
        SceneObject(
            "person",
            ((690, 215), (-50, 235)),
            speed=42,
            size=88,
            start_s=1.0,
            colour=(30, 200, 230),
            colour2=(30, 30, 30),
            skin=(60, 85, 120),
        ),
        SceneObject(
            "person",
            ((230, 420), (250, 120), (-50, 70)),
            speed=38,
            size=84,
            start_s=5.0,
            colour=(230, 230, 230),
            colour2=(80, 130, 160),
            skin=(150, 185, 225),
        ),
        SceneObject(
            "person",
            ((480, -50), (470, 150), (660, 330)),
            speed=45,
            size=80,
            start_s=9.0,
            colour=(40, 160, 40),
            colour2=(70, 70, 70),
            skin=(90, 125, 170),
        ),
        # Cars: one parked (seen from above), the others driving through along the lanes.
        SceneObject(
            "car", ((565, 120),), size=130, view="top", colour=(180, 180, 175), colour2=(70, 50, 35)
        ),
        SceneObject(
            "car",
            ((-120, 175), (760, 175)),
            speed=95,
            size=170,
            colour=(40, 40, 190),
            colour2=(40, 40, 40),
        ),
        SceneObject(
            "car",
            ((780, 300), (-140, 300)),
            speed=75,
            size=185,
            start_s=3.5,
            colour=(150, 70, 20),
            colour2=(95, 80, 60),
        ),
        SceneObject(
            "car",
            ((-120, 170), (760, 185)),
            speed=120,
            size=160,
            start_s=10.0,
            colour=(235, 235, 235),
            colour2=(70, 50, 35),
        ),
        SceneObject(
            "car",
            ((760, 300), (-140, 290)),
            speed=85,
            size=175,
            start_s=15.0,
            colour=(30, 190, 220),
            colour2=(40, 40, 40),
        ),
    ),
)


def write_clip(scene: Scene, path: Path) -> dict[str, list[dict[str, object]]]:
    """Render `scene` to an H.264 file at `path`; the ground-truth boxes per frame index."""
    n_frames = round(scene.duration_s * scene.fps)
    truth: dict[str, list[dict[str, object]]] = {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(scene.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
        stream.time_base = 1 / Fraction(scene.fps).limit_denominator(1001)
        # One encoder thread: x264's output then does not depend on the machine's core count.
        stream.options = {"crf": "23", "preset": "medium", "threads": "1"}
        for index in range(n_frames):
            bgr, boxes = render_frame(scene, index / scene.fps)
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
            truth[str(index)] = [
                {
                    "object_id": b.object_id,
                    "label": b.label,
                    "class_id": b.class_id,
                    "xyxy": list(b.xyxy),
                }
                for b in boxes
            ]
        container.mux(stream.encode(None))
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("sample_videos"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    truth = write_clip(PARKING, args.out_dir / "parking.mp4")
    meta = {
        "width": WIDTH,
        "height": HEIGHT,
        "fps": FPS,
        "frames": len(truth),
        "classes": ["person", "car"],
        "box_format": "xyxy pixels, clipped to the frame",
        "objects": [asdict(o) for o in PARKING.objects],
        "boxes": truth,
    }
    (args.out_dir / "parking.json").write_text(json.dumps(meta, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
