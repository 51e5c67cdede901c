"""Tracker quality on ground truth: streamer's tracker against the open trackers of the
`trackers` package (SORT, ByteTrack, OC-SORT, BoT-SORT without camera-motion
compensation), all on the same detections, all scored by one evaluator (TrackEval's
CLEAR, Identity and HOTA, as the package implements them), side by side in one run.

The footage is tools/tracking_scenes.py's: rendered scenes with the true identity of
every box, each hard in one way real scenes are (a pillar people walk behind for 1-3 s,
paths that cross, stop and go, groups that walk together and split, a busy street), with
the demo detector's boxes; and each again with flickering detections (a fifth of the
boxes missing, cars called trucks at random). Ground truth is class-agnostic (every
object is a class-1 "pedestrian" to the evaluator): what is measured is identity.

Real footage has no ground truth boxes here, but the shared assets' person clip has a
known count: six people walk through a room one at a time. With `--real-clip` (default:
that clip, under $STREAMER_ASSETS or ../shared/assets) every tracker also runs on
YOLOX-nano's person boxes of it, and the table counts the objects each makes (6 is
right; more are identities split or false objects) and the frames in which it shows
more than one (only one person is ever in view).

    python -m venv .venv-trackers
    .venv-trackers/bin/pip install -r benchmarks/requirements-trackers.txt
    python -m benchmarks.tracker_quality --trackers-python .venv-trackers/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamer.analytics.tracking import Tracker, TrackerSettings
from streamer.config.schema import TrackingConfig
from streamer.models import Model
from streamer.runtime.messages import Detections
from tools.tracking_scenes import (
    DETECTOR_FLOOR,
    FLICKER_LABELS,
    HEIGHT,
    SCENES,
    WIDTH,
    Annotated,
    annotate,
    detect,
    flickered,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "models" / "demo-detector.onnx"
CONFIDENCE = 0.35  # the demo pipeline's detection threshold
METRICS = ("MOTA", "IDF1", "HOTA", "IDSW")
ASSETS = Path(os.environ.get("STREAMER_ASSETS", REPO.parent / "shared" / "assets"))
REAL_CLIP = ASSETS / "videos" / "one-by-one-person-detection.mp4"
REAL_MODEL = ASSETS / "models" / "yolox_nano.onnx"
REAL_PEOPLE = 6  # counted by eye, as tests/test_objects.py does
REAL_CONFIDENCE = 0.25  # a pipeline's default
PERSON = 0  # COCO's class id


def annotated_scenes(model_path: Path, work: Path) -> list[Annotated]:
    """Every scene rendered and detected, and its flickered copy; kept in `work`."""
    cache = work / f"scenes-{model_path.stem}.pickle"
    if cache.is_file() and cache.stat().st_mtime > model_path.stat().st_mtime:
        clean: list[Annotated] = pickle.loads(cache.read_bytes())
    else:
        model = Model.load(model_path, providers=("cpu",), workers=1)
        clean = [annotate(name, make(), model) for name, make in SCENES.items()]
        cache.write_bytes(pickle.dumps(clean))
    return [*clean, *(flickered(scene) for scene in clean)]


def streamer_settings(confidence: float) -> TrackerSettings:
    """The tracker as a pipeline with this detection threshold and default `tracking:`
    runs it, for the flickered scenes' labels (person, car, truck)."""
    return TrackerSettings.from_config(TrackingConfig(), confidence, FLICKER_LABELS)


def run_streamer(
    scene: Annotated, settings: TrackerSettings, frame_hw: tuple[int, int] = (HEIGHT, WIDTH)
) -> list[str]:
    """MOT lines of the confirmed tracks seen in each frame, with the boxes detected."""
    tracker = Tracker(settings)
    lines = []
    for i, (t, detections) in enumerate(zip(scene.times_s, scene.detections, strict=True)):
        update = tracker.update(t, detections, frame_hw)
        for track in update.seen:
            if track.confirmed:
                x1, y1, x2, y2 = track.box
                lines.append(f"{i + 1},{track.track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},"
                             f"{y2 - y1:.2f},1,-1,-1,-1")  # fmt: skip
    return lines


def write_sequences(scenes: list[Annotated], settings: TrackerSettings, work: Path) -> None:
    """Ground truth, detections and streamer's tracks in MOTChallenge's layout."""
    sequences = {}
    for scene in scenes:
        fps = round(1 / (scene.times_s[1] - scene.times_s[0]), 3)
        sequences[scene.name] = {"fps": fps, "frames": len(scene.times_s)}
        gt = [
            f"{i + 1},{oid + 1},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,1,1"
            for i, boxes in enumerate(scene.truth)
            for oid, _, (x1, y1, x2, y2) in boxes
        ]
        det = [
            f"{i + 1},-1,{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{c:.4f}"
            for i, d in enumerate(scene.detections)
            for (x1, y1, x2, y2), c in zip(d.xyxy, d.confidence, strict=True)
        ]
        for path, lines in (
            (work / "gt" / scene.name / "gt" / "gt.txt", gt),
            (work / "det" / f"{scene.name}.txt", det),
            (work / "trackers" / "streamer" / f"{scene.name}.txt", run_streamer(scene, settings)),
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n" if lines else "")
    (work / "sequences.json").write_text(json.dumps(sequences))


def detected_clip(clip: Path, model_path: Path, work: Path) -> Annotated:
    """The clip's frames and the model's person boxes on each (no truth); kept in `work`."""
    cache = work / f"real-{clip.stem}-{model_path.stem}.pickle"
    if cache.is_file():
        kept: Annotated = pickle.loads(cache.read_bytes())
        return kept
    model = Model.load(model_path, providers=("cpu",), workers=1)
    times, detections = [], []
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            d = detect(model, frame.to_ndarray(format="bgr24"), DETECTOR_FLOOR)
            person = d.class_id == PERSON
            detections.append(Detections(d.xyxy[person], d.confidence[person],
                                         d.class_id[person]))  # fmt: skip
            times.append(float(frame.time or 0.0))
    real = Annotated("real", times, [[] for _ in times], detections)
    cache.write_bytes(pickle.dumps(real))
    return real


def write_counted(clips: list[Annotated], work: Path, frame_hw: tuple[int, int]) -> None:
    """The real clip's detections and streamer's tracks, for trackers to be counted on."""
    about = {}
    settings = TrackerSettings.from_config(TrackingConfig(), REAL_CONFIDENCE, ["person"])
    for clip in clips:
        fps = round(1 / (clip.times_s[1] - clip.times_s[0]), 3)
        about[clip.name] = {"fps": fps, "frames": len(clip.times_s),
                            "confidence": REAL_CONFIDENCE}  # fmt: skip
        det = [
            f"{i + 1},-1,{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{c:.4f}"
            for i, d in enumerate(clip.detections)
            for (x1, y1, x2, y2), c in zip(d.xyxy, d.confidence, strict=True)
        ]
        for path, lines in (
            (work / "counted" / "det" / f"{clip.name}.txt", det),
            (work / "counted" / "streamer" / f"{clip.name}.txt",
             run_streamer(clip, settings, frame_hw)),
        ):  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n" if lines else "")
    (work / "counted.json").write_text(json.dumps(about))


def counts(work: Path, names: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """Per tracker and counted clip: the objects it made, and the frames in which it
    showed more than one."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for folder in sorted(p for p in (work / "counted").iterdir() if p.name != "det"):
        for name in names:
            text = (folder / f"{name}.txt").read_text()
            rows = np.loadtxt(text.splitlines(), delimiter=",", ndmin=2) if text.strip() else (
                np.zeros((0, 10)))  # fmt: skip
            _, per_frame = np.unique(rows[:, 0], return_counts=True)
            out.setdefault(folder.name, {})[name] = {
                "objects": len(np.unique(rows[:, 1])),
                "frames_with_two": int((per_frame > 1).sum()),
            }
    return out


def combined(results: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Totals over `names`: MOTA and IDF1 from summed counts would need the evaluator's
    internals, so the means over sequences (each weighted alike) and summed switches."""
    rows = [results[n] for n in names]
    return {
        "MOTA": round(float(np.mean([r["MOTA"] for r in rows])), 4),
        "IDF1": round(float(np.mean([r["IDF1"] for r in rows])), 4),
        "HOTA": round(float(np.mean([r["HOTA"] for r in rows])), 4),
        "IDSW": int(sum(r["IDSW"] for r in rows)),
    }


def report(results: dict[str, dict[str, Any]], names: list[str]) -> dict[str, Any]:
    clean = [n for n in names if not n.endswith("_flicker")]
    flicker = [n for n in names if n.endswith("_flicker")]
    summary = {
        tracker: {"clean": combined(r, clean), "flicker": combined(r, flicker)}
        for tracker, r in results.items()
    }
    print(f"{'tracker':<10}" + "".join(f"{'clean ' + m:>13}" for m in METRICS)
          + "".join(f"{'flicker ' + m:>15}" for m in METRICS))  # fmt: skip
    for tracker, s in summary.items():
        print(f"{tracker:<10}" + "".join(f"{s['clean'][m]:>13}" for m in METRICS)
              + "".join(f"{s['flicker'][m]:>15}" for m in METRICS))  # fmt: skip
    print("\nID switches per scene:")
    print(f"{'tracker':<10}" + "".join(f"{n:>22}" for n in names))
    for tracker, r in results.items():
        print(f"{tracker:<10}" + "".join(f"{r[n]['IDSW']:>22}" for n in names))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackers-python", type=Path, required=True,
                        help="the Python of a virtual environment with "
                             "benchmarks/requirements-trackers.txt installed")  # fmt: skip
    parser.add_argument("--model", type=Path, default=DEMO_MODEL)
    parser.add_argument("--work-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "tracker-quality")  # fmt: skip
    parser.add_argument(
        "--real-clip",
        type=Path,
        default=REAL_CLIP,
        help="the person clip of the shared assets (skipped if absent)",
    )
    parser.add_argument("--real-model", type=Path, default=REAL_MODEL)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    scenes = annotated_scenes(args.model.resolve(), work)
    write_sequences(scenes, streamer_settings(CONFIDENCE), work)
    real: list[Annotated] = []
    (work / "counted.json").unlink(missing_ok=True)
    if args.real_clip.is_file() and args.real_model.is_file():
        clip = detected_clip(args.real_clip.resolve(), args.real_model.resolve(), work)
        real = [clip, flickered(clip)]
        with av.open(str(args.real_clip)) as container:
            stream = container.streams.video[0]
            write_counted(real, work, (stream.height, stream.width))
    else:
        print(f"no real clip ({args.real_clip}) or model ({args.real_model}): not counted")
    peer = subprocess.run(
        [str(args.trackers_python), str(REPO / "benchmarks" / "peer_trackers.py"), str(work),
         str(CONFIDENCE)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if peer.returncode != 0:
        sys.exit(f"benchmarks/peer_trackers.py failed:\n{peer.stderr}")
    results = json.loads(peer.stdout.strip().splitlines()[-1])
    summary = report(results, [s.name for s in scenes])
    names = [c.name for c in real]
    counted = counts(work, names) if real else {}
    if counted:
        print(f"\nReal footage ({args.real_clip.name}, {args.real_model.stem}; flickered: a "
              f"fifth of the boxes missing): objects made ({REAL_PEOPLE} people walk through "
              "one at a time), frames showing two or more")  # fmt: skip
        print(f"{'tracker':<10}" + "".join(f"{n + ' objects':>22}{n + ' frames':>22}"
                                           for n in names))  # fmt: skip
        for tracker, c in counted.items():
            print(f"{tracker:<10}" + "".join(
                f"{c[n]['objects']:>22}{c[n]['frames_with_two']:>22}" for n in names))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "sequences": results,
                                         "real": counted}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
