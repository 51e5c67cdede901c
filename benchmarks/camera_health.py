"""Where the camera-health thresholds come from, and how fast they fire: each condition's
measure over clean footage (its worst value is what a threshold must stay clear of), and
on fault clips made from the same footage (`tools/fault_clips.py`), the seconds from the
fault's start to `raised` and from its end to `cleared`, by the clip's clock.

    python -m benchmarks.camera_health [CLIP ...]

Default clips: the repository's (played three times) and, when the test assets are
beside the repository, the person clip. Watches decoded frames directly with the default
rules (no model: the conditions do not depend on it). Prints the tables of
docs/operations.md, "Camera health".

Then, with the test assets, detection drift on clean footage: YOLOX-nano over the whole
person clip, and each 30 s window's divergence from baselines of 20 to 60 s, per feature:
the worst is what the default drift thresholds must stay clear of ("Detection drift").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import av
import numpy as np

from streamer import Event, Pipeline
from streamer.config.loader import parse_config
from streamer.config.schema import HealthConfig
from streamer.events.event import AlertState, DriftFeature, HealthCondition
from streamer.quality.camera import CameraWatch
from streamer.quality.conditions import DEFAULT_RULES
from streamer.quality.drift import DriftRules, Histograms, scores
from streamer.quality.settings import DEFAULT_DRIFT_THRESHOLDS, camera_rules
from streamer.runtime.messages import Frame
from tools.fault_clips import RAISES, Fault, make_fault_clips

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO.parent / "shared" / "assets"
PERSON_CLIP = ASSETS / "videos" / "one-by-one-person-detection.mp4"
YOLOX = ASSETS / "models" / "yolox_nano.onnx"
BASELINES_S = (20.0, 30.0, 40.0, 60.0)
WINDOW_S = 30.0
ONSET_S, END_S, LENGTH_S = 20.0, 40.0, 55.0
BASELINE_S = 10.0


Changes = list[tuple[float, HealthCondition, AlertState]]
Values = dict[str, list[tuple[float, float]]]


def watch(clip: Path) -> tuple[Changes, Values, float]:
    """The watcher's changes over the clip (time, condition, state), every (time, value)
    each condition was judged by after the baseline, and the ms a measured picture took."""
    health = HealthConfig(baseline_s=BASELINE_S)
    w = CameraWatch("cam", camera_rules(health), health.sample_fps, health.baseline_s)
    changes: Changes = []
    values: Values = defaultdict(list)
    spent_s, measured = 0.0, 0
    with av.open(str(clip)) as container:
        for index, picture in enumerate(container.decode(video=0)):
            t = float(picture.time or 0.0)
            frame = Frame("cam", index, t, 0, 1.7e9 + t, None, picture, t)
            started = time.perf_counter()
            seen = w.observe(frame)
            if seen is None:
                continue
            spent_s += time.perf_counter() - started
            measured += 1
            changes += [(t, h.condition, h.state) for h in seen]
            if t >= BASELINE_S:
                for condition, gauge in w.gauges.items():
                    values[condition].append((t, gauge.value))
    return changes, values, 1000 * spent_s / max(measured, 1)


def worst_held(values: list[tuple[float, float]], below: bool, hold_s: float) -> float:
    """The value clean footage came closest to the threshold with for a whole hold time:
    over every span of `hold_s`, the span's least alarming value; the most alarming such."""
    out = []
    for i, (start, _) in enumerate(values):
        span = [v for t, v in values[i:] if t - start <= hold_s]
        out.append(max(span) if below else min(span))
    return min(out) if below else max(out)


Boxes = tuple[float, np.ndarray, np.ndarray, np.ndarray]  # pts, confidence, class, area share


def detections(clip: Path, model: Path) -> tuple[list[Boxes], int]:
    """Every frame's boxes of `model` over `clip`, and the number of classes."""
    config = parse_config(
        {"name": "drift", "sources": [{"id": "cam", "uri": str(clip)}],
         "model": {"path": str(model), "confidence": 0.3}, "events": {"emit": ["detections"]},
         "sink": "none"},
        "benchmark",
    )  # fmt: skip
    frames: list[Boxes] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        area = float(stream.width * stream.height)

    def take(event: Event) -> None:
        if event.frame is None or event.frame.pts is None:
            return
        boxes = event.objects
        frames.append((
            event.frame.pts,
            np.array([o.confidence for o in boxes]),
            np.array([o.class_id for o in boxes], dtype=np.int64),
            np.array([(o.bbox[2] - o.bbox[0]) * (o.bbox[3] - o.bbox[1]) / area for o in boxes]),
        ))  # fmt: skip

    pipeline = Pipeline.from_config(config, on_event=take)
    pipeline.run()
    return frames, len(pipeline.labels)


def clean_drift(frames: list[Boxes], classes: int) -> dict[DriftFeature, float]:
    """The largest divergence any WINDOW_S window had from any of the BASELINES_S."""
    rules = DriftRules(WINDOW_S, DEFAULT_DRIFT_THRESHOLDS, min_frames=100, min_boxes=100)
    worst = dict.fromkeys(DriftFeature, 0.0)
    for baseline_s in BASELINES_S:
        reference = Histograms(classes)
        window, start = Histograms(classes), baseline_s
        for pts, confidence, class_id, share in frames:
            if pts < baseline_s:
                reference.add(confidence, class_id, share)
                continue
            if pts - start >= WINDOW_S:
                for feature, score in scores(window, reference, rules).items():
                    worst[feature] = max(worst[feature], score)
                window, start = Histograms(classes), pts
            window.add(confidence, class_id, share)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path)
    args = parser.parse_args()
    clips: list[tuple[Path, int]] = [(c, 1) for c in args.clips]
    if not clips:
        clips = [(REPO / "sample_videos" / "parking.mp4", 3)]
        if PERSON_CLIP.exists():
            clips.append((PERSON_CLIP, 1))
    for clip, loops in clips:
        with tempfile.TemporaryDirectory() as folder:
            made = make_fault_clips(clip, Path(folder), ONSET_S, END_S, loops, LENGTH_S)
            print(f"\n{clip.name} ({LENGTH_S:g} s, fault from {ONSET_S:g} s to {END_S:g} s)")
            _, clean, ms = watch(made[Fault.CLEAN])
            print(f"{ms:.2f} ms per measured picture\n")
            print("| condition | raised beyond | held for | clean: worst held | worst picture |")
            print("|---|---|---|---|---|")
            for condition, rule in DEFAULT_RULES.items():
                seen = clean[condition]
                held = worst_held(seen, rule.below, rule.hold_s)
                one = (min if rule.below else max)(v for _, v in seen)
                print(f"| {condition} | {rule.threshold:g} | {rule.hold_s:g} s | {held:.4g} "
                      f"| {one:.4g} |")  # fmt: skip
            print("\n| fault | raises | raised after | cleared after | also raised |")
            print("|---|---|---|---|---|")
            for fault, expected in RAISES.items():
                if expected is None:
                    continue
                changes, _, _ = watch(made[fault])
                raised = [t for t, c, s in changes if c is expected and s is AlertState.RAISED]
                cleared = [t for t, c, s in changes if c is expected and s is AlertState.CLEARED]
                others = sorted({str(c) for _, c, _ in changes if c is not expected})
                up = f"{raised[0] - ONSET_S:.1f} s" if raised else "never"
                down = f"{cleared[0] - END_S:.1f} s" if cleared else "never"
                print(f"| {fault} | {expected} | {up} | {down} | {', '.join(others) or '-'} |")
    if not (PERSON_CLIP.exists() and YOLOX.exists()):
        print("\n(detection drift: needs the test assets beside the repository)")
        return
    frames, classes = detections(PERSON_CLIP, YOLOX)
    worst = clean_drift(frames, classes)
    print(f"\n{PERSON_CLIP.name}, YOLOX-nano: {WINDOW_S:g} s windows after baselines of "
          f"{', '.join(f'{b:g}' for b in BASELINES_S)} s\n")  # fmt: skip
    print("| feature | threshold | clean: worst window |")
    print("|---|---|---|")
    for feature, score in worst.items():
        print(f"| {feature} | {DEFAULT_DRIFT_THRESHOLDS[feature]:g} | {score:.3f} |")


if __name__ == "__main__":
    main()
