"""Scaling over shards: the same pipeline in 1, 2, ... worker processes, side by side.

Two figures per number of workers, in one run, with the same model and clip:

- offline throughput: S copies of the clip read as fast as possible (frames per second
  over the middle 80 % of the run, so that starting the processes does not count), and
  how many of the machine's cores the run kept busy: where one worker already keeps
  every core busy, more workers cannot add throughput;
- live density: the most cameras (the clip paced at its own rate, as a camera sends it)
  sustained for `--seconds` with no frame dropped and p99 glass-to-event latency within
  the budget, found by doubling then bisecting the number of cameras.

It prints each figure with how close N workers come to N times one worker. The model
should be cheap (the default is the repository's demo detector) so that what shows is
the Python and decoding side, the part one process cannot spread over cores.

    python -m benchmarks.scaling --workers 1,2
    python -m benchmarks.scaling --workers 1,2,4,8 --model yolov8n.onnx --clip 1080p.mp4

It needs redis-server (scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from streamer.config.loader import parse_config
from streamer.config.schema import PipelineConfig
from streamer.models.sessions import usable_cores
from streamer.pipeline.lifecycle import Pipeline
from streamer.shards.supervisor import ShardedPipeline
from tools.local_redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EVERY_S = 0.2


def pipeline_config(clip: Path, model: Path, cameras: int, budget_ms: int) -> PipelineConfig:
    sources = [{"id": f"cam{i}", "uri": str(clip)} for i in range(cameras)]
    return parse_config(
        {
            "name": "scaling",
            "sources": sources,
            "model": {"path": str(model), "confidence": 0.35},
            "realtime": {"max_latency_ms": budget_ms},
            "events": {"emit": ["detections"]},
            "sink": {"redis": {"stream": "streamer:{pipeline}:events", "maxlen": 10_000}},
        },
        "benchmarks/scaling.py",
    )


def cpu_s() -> float:
    """CPU seconds used so far by this process and its ended children (the shards)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(
    config: PipelineConfig, workers: int, redis_url: str, *, realtime: bool, seconds: float | None
) -> tuple[dict[str, Any], float, float]:
    """Run to the end (or for `seconds`): the stats, processed frames per second over the
    middle 80 % of the frames, and the cores kept busy (CPU seconds over wall seconds,
    building and starting included)."""
    started_cpu, started = cpu_s(), time.monotonic()
    pipeline: Pipeline | ShardedPipeline
    if workers == 1:
        pipeline = Pipeline.from_config(config, redis_url=redis_url, realtime=realtime,
                                        duration_s=seconds)  # fmt: skip
    else:
        pipeline = ShardedPipeline.from_config(config, workers=workers, redis_url=redis_url,
                                               realtime=realtime, duration_s=seconds)  # fmt: skip
    samples: list[tuple[float, int]] = []
    pipeline.start()
    while not pipeline.join(SAMPLE_EVERY_S):
        samples.append((time.monotonic(), pipeline.stats()["frames"]["processed"]))
    stats = pipeline.stats()
    samples.append((time.monotonic(), stats["frames"]["processed"]))
    cores = (cpu_s() - started_cpu) / (time.monotonic() - started)
    return stats, middle_rate(samples), cores


def middle_rate(samples: list[tuple[float, int]]) -> float:
    """Frames per second between the samples at 10 % and at 90 % of the frames."""
    total = samples[-1][1]
    low = next((s for s in samples if s[1] >= 0.1 * total), samples[0])
    high = next((s for s in samples if s[1] >= 0.9 * total), samples[-1])
    return (high[1] - low[1]) / (high[0] - low[0]) if high[0] > low[0] else 0.0


def sustained(stats: dict[str, Any], budget_ms: int) -> bool:
    frames = stats["frames"]
    return (
        not sum(frames["dropped"].values())
        and frames["processed"] == frames["decoded"]
        and stats["latency_ms"]["p99"] <= budget_ms
    )


def most_cameras(
    clip: Path, model: Path, workers: int, redis_url: str, seconds: float, budget_ms: int,
    most: int,
) -> tuple[int, list[dict[str, Any]]]:  # fmt: skip
    """The most paced cameras sustained, by doubling then bisecting; every trial run."""
    trials: list[dict[str, Any]] = []

    def ok(cameras: int) -> bool:
        config = pipeline_config(clip, model, cameras, budget_ms)
        stats, _, _ = run(config, workers, redis_url, realtime=True, seconds=seconds)
        good = sustained(stats, budget_ms)
        trials.append({"cameras": cameras, "sustained": good, "fps": stats["fps"],
                       "dropped": sum(stats["frames"]["dropped"].values()),
                       "p99_ms": stats["latency_ms"]["p99"]})  # fmt: skip
        last = trials[-1]
        verdict = "sustained" if good else "not sustained"
        print(f"  {workers} worker(s), {cameras:3d} cameras: {verdict} "
              f"(dropped {last['dropped']}, p99 {last['p99_ms']:.0f} ms)", flush=True)  # fmt: skip
        return good

    good, bad = 0, None
    cameras = max(1, workers)
    while bad is None and cameras <= most:
        if ok(cameras):
            good, cameras = cameras, cameras * 2
        else:
            bad = cameras
    if bad is None:
        return good, trials
    while bad - good > 1:
        middle = (good + bad) // 2
        if ok(middle):
            good = middle
        else:
            bad = middle
    return good, trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="Worker counts to compare (1 first).")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo-detector.onnx")
    parser.add_argument("--clip", type=Path, default=ROOT / "sample_videos" / "parking.mp4")
    parser.add_argument("--sources", type=int, default=8, help="Clips in the offline run.")
    parser.add_argument("--seconds", type=float, default=12.0, help="Length of a live trial.")
    parser.add_argument(
        "--repeats", type=int, default=3, help="Offline runs per count, alternated; median kept."
    )
    parser.add_argument("--budget-ms", type=int, default=500)
    parser.add_argument("--most-cameras", type=int, default=64)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    counts = [int(n) for n in args.workers.split(",")]
    results: dict[str, Any] = {"workers": {}}
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder)) as redis_server:
        # Offline: the worker counts alternated, so that a slow moment of the machine
        # does not fall on one count only.
        offline = pipeline_config(args.clip, args.model, args.sources, args.budget_ms)
        rates: dict[int, list[tuple[float, float]]] = {n: [] for n in counts}
        for _ in range(args.repeats):
            for workers in counts:
                stats, rate, busy = run(offline, workers, redis_server.url, realtime=False,
                                        seconds=None)  # fmt: skip
                rates[workers].append((rate, busy))
                print(f"{workers} worker(s): offline {rate:.1f} frames/s "
                      f"({stats['frames']['processed']} frames), {busy:.2f} of "
                      f"{usable_cores()} cores busy", flush=True)  # fmt: skip
        for workers in counts:
            rate, busy = sorted(rates[workers])[len(rates[workers]) // 2]
            cameras, trials = most_cameras(
                args.clip, args.model, workers, redis_server.url, args.seconds, args.budget_ms,
                args.most_cameras,
            )  # fmt: skip
            results["workers"][workers] = {"offline_fps": round(rate, 1),
                                           "cores_busy": round(busy, 2), "cameras": cameras,
                                           "offline_runs": rates[workers],
                                           "trials": trials}  # fmt: skip
    one = results["workers"][counts[0]]
    print()
    print(f"On {usable_cores()} cores:")
    print("| workers | offline frames/s | vs N x 1 worker | cores busy | live cameras sustained "
          "| vs N x 1 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for workers, r in results["workers"].items():
        fps_ratio = r["offline_fps"] / (workers * one["offline_fps"]) if one["offline_fps"] else 0
        cam_ratio = r["cameras"] / (workers * one["cameras"]) if one["cameras"] else 0
        print(f"| {workers} | {r['offline_fps']:.1f} | {fps_ratio:.2f} | {r['cores_busy']:.2f} "
              f"| {r['cameras']} | {cam_ratio:.2f} |")  # fmt: skip
    results["clip"], results["model"] = str(args.clip), str(args.model)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
