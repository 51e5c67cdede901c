"""Tracking and event rules per frame with 50 objects in view (target: under 2 ms).

50 objects move on random straight paths with jittering boxes; every frame goes through the
source's tracker and its rules (two zones, two lines), as the postprocessing stage runs
them. Prints the time per frame (mean, p50, p99) and, side by side, the tracker alone.

    python -m benchmarks.tracking [--objects 50] [--frames 3000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from streamer.analytics.geometry import polygon_contour
from streamer.analytics.rules import LineRule, ObjectRules, ZoneRule
from streamer.analytics.tracking import Tracker, TrackerSettings
from streamer.events.event import Anchor
from streamer.runtime.messages import Detections, Frame

WIDTH, HEIGHT, FPS = 1280, 720, 25.0


def scene(objects: int, frames: int, seed: int = 0) -> list[Detections]:
    """Boxes of `objects` people walking back and forth across the frame, with jitter."""
    rng = np.random.default_rng(seed)
    start = rng.uniform([50, 100], [WIDTH - 100, HEIGHT - 50], (objects, 2))
    velocity = rng.uniform(-60, 60, (objects, 2)) / FPS
    size = rng.uniform([20, 50], [40, 110], (objects, 2))
    out = []
    for i in range(frames):
        # Bounce off the frame's edges so every object stays in view.
        travel = start + velocity * i
        span = np.array([WIDTH - 60, HEIGHT - 120])
        xy = 20 + np.abs((travel - 20) % (2 * span) - span)
        xy = xy + rng.normal(0, 1.0, xy.shape)
        boxes = np.concatenate([xy, xy + size], axis=1).astype(np.float32)
        out.append(Detections(boxes, rng.uniform(0.3, 0.95, objects).astype(np.float32),
                              np.zeros(objects, np.int64)))  # fmt: skip
    return out


def rules_for(settings: TrackerSettings) -> ObjectRules:
    zones = [
        ZoneRule("left", polygon_contour([(0, 0), (400, 0), (400, 720), (0, 720)]), None,
                 Anchor.BOTTOM_CENTER, 0.1),
        ZoneRule("door", polygon_contour([(700, 300), (900, 250), (1000, 500), (750, 600)]),
                 frozenset({0}), Anchor.BOTTOM_CENTER, 0.1),
    ]  # fmt: skip
    lines = [
        LineRule("mid", (640, 0), (640, 720), None, Anchor.BOTTOM_CENTER, 0.1),
        LineRule("diag", (0, 720), (1280, 0), frozenset({0}), Anchor.CENTER, 0.1),
    ]
    return ObjectRules(Tracker(settings), zones, lines)


def frame(index: int) -> Frame:
    t = index / FPS
    return Frame("cam1", index, t, 0, 1.7e9 + t, None, np.zeros((1, 1, 3), np.uint8), t)


def time_per_frame(frames: list[Detections], rules_on: bool) -> dict[str, float]:
    settings = TrackerSettings(high_confidence=0.5)
    rules, tracker = rules_for(settings), Tracker(settings)
    costs, occurrences = [], 0
    for i, detections in enumerate(frames):
        f = frame(i)
        started = time.perf_counter_ns()
        if rules_on:
            occurrences += len(rules.on_frame(f, detections))
        else:
            tracker.update(f.time_s, detections)
        costs.append((time.perf_counter_ns() - started) / 1e6)
    warm = np.array(costs[50:])  # the first frames create the tracks
    return {
        "mean_ms": round(float(warm.mean()), 3),
        "p50_ms": round(float(np.percentile(warm, 50)), 3),
        "p99_ms": round(float(np.percentile(warm, 99)), 3),
        "events": occurrences,
        "tracks_at_end": len(rules._tracker.tracks if rules_on else tracker.tracks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    frames = scene(args.objects, args.frames)
    results = {
        "objects": args.objects,
        "frames": args.frames,
        "tracker_only": time_per_frame(frames, rules_on=False),
        "tracker_and_rules": time_per_frame(frames, rules_on=True),
    }
    for name in ("tracker_only", "tracker_and_rules"):
        r = results[name]
        print(
            f"{name:>17}: mean {r['mean_ms']:.3f} ms  p50 {r['p50_ms']:.3f} ms  "
            f"p99 {r['p99_ms']:.3f} ms per frame, {r['tracks_at_end']} tracks at the end"
        )
    total = results["tracker_and_rules"]
    print(f"\n{args.objects} objects: tracking + 2 zones + 2 lines = {total['mean_ms']:.2f} ms "
          f"per frame (target < 2 ms); {total['events']} zone/line/object events")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
