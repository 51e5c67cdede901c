"""Where the camera-health thresholds come from, and how fast they fire: each condition's
measure over clean footage (its worst value is what a threshold must stay clear of), and
on fault clips made from the same footage (`tools/fault_clips.py`), the seconds from the
fault's start to `raised` and from its end to `cleared`, by the clip's clock.

    python -m benchmarks.camera_health [CLIP ...]

Default clips: the repository's (played three times) and, when the test assets are
beside the repository, the person clip. Watches decoded frames directly with the default
rules (no model: the conditions do not depend on it). Prints the tables of
docs/operations.md, "Camera health".
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import av

from streamer.config.schema import HealthConfig
from streamer.events.event import AlertState, HealthCondition
from streamer.quality.camera import CameraWatch
from streamer.quality.conditions import DEFAULT_RULES
from streamer.quality.settings import camera_rules
from streamer.runtime.messages import Frame
from tools.fault_clips import RAISES, Fault, make_fault_clips

REPO = Path(__file__).resolve().parent.parent
PERSON_CLIP = REPO.parent / "shared" / "assets" / "videos" / "one-by-one-person-detection.mp4"
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


if __name__ == "__main__":
    main()
