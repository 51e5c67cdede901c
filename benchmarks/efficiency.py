"""Pipeline efficiency: streamer offline against inference alone and a plain loop.

Measured side by side in one run, on the same model, clip and input shape (DESIGN.md
section 10):

- (a) inference alone: ONNX Runtime on ready tensors at the pipeline's batch size and
  input shape, the limit; measured before and after the others and averaged, since this
  machine's speed drifts;
- (b) streamer offline: `streamer run` on the file, every frame;
- (c) the plain loop a user writes by hand: decode to BGR, letterbox with OpenCV to the
  same input shape, run, NMS, one frame at a time;
- (e) how many live 15 fps sources of the clip one process sustains with no frame dropped:
  1, 2, 3... copies played in real time (`--realtime`, paced like cameras) until frames
  are dropped.

It prints frames per second, the ratios (b)/(a) and (b)/(c), CPU use (cores busy on
average) and peak memory, as a table and, with `--json FILE`, as JSON. The clip is made
720p H.264 from the given one first (cached under --work-dir).

    python -m benchmarks.efficiency --model ../shared/assets/models/yolov8n.onnx \\
        --clip ../shared/assets/videos/one-by-one-person-detection.mp4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from benchmarks import plain
from streamer.models import Model
from tools.local_redis import RedisServer

SIZE = (1280, 720)
LIVE_FPS = 15


def make_clip(src: Path, dst: Path, frames: int) -> Path:
    """The first `frames` frames of `src`, scaled to 720p, as 15 fps H.264 with a keyframe
    every 2 s, as a camera sends."""
    if dst.is_file():
        return dst
    part = dst.with_suffix(".part.mp4")
    with av.open(str(src)) as inp, av.open(str(part), "w") as out:
        rate = Fraction(LIVE_FPS)
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.time_base = 1 / rate
        stream.options = {"crf": "23", "preset": "fast", "g": str(2 * round(float(rate)))}
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= frames:
                break
            scaled = frame.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p")
            # Retimed to 15 fps: PyAV rescales pts from the frame's own time base.
            scaled.pts, scaled.time_base = i, 1 / rate
            out.mux(stream.encode(scaled))
        out.mux(stream.encode(None))
    part.rename(dst)
    return dst


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def inference_alone(model: Model, batch: int, input_hw: tuple[int, int], seconds: float) -> float:
    tensor = np.random.rand(batch, 3, *input_hw).astype(np.float32)
    model.run(tensor)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.run(tensor)
        calls += 1
    return calls * batch / (time.perf_counter() - started)


def streamer_offline(clip: Path, model_path: Path, batch: int, work: Path) -> dict[str, Any]:
    with RedisServer(work / "redis") as server:
        pipeline = work / "bench.yaml"
        pipeline.write_text(
            f"name: bench\nsources:\n  - {{id: clip, uri: '{clip}'}}\n"
            f"model:\n  path: '{model_path}'\n  batch: {{max_size: {batch}}}\n"
            "events: {emit: [detections]}\n"
        )
        stats_file = work / "stats.json"
        cpu_before = cpu_s(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "streamer", "run", str(pipeline), "--redis-url", server.url,
             "--stats-json", str(stats_file)],
            check=True, capture_output=True,
        )  # fmt: skip
        wall_s = time.perf_counter() - started
        cpu = cpu_s(resource.RUSAGE_CHILDREN) - cpu_before
    stats = json.loads(stats_file.read_text())
    return {
        "fps": stats["fps"],
        "frames": stats["frames"]["processed"],
        "cpu_cores": round(cpu / wall_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }


def live_sources_sustained(
    clip: Path, model_path: Path, batch: int, work: Path, most: int, seconds: float
) -> list[dict[str, Any]]:
    """Runs of 1, 2, ... paced copies of the clip until one drops frames (or `most`)."""
    trials = []
    with RedisServer(work / "redis") as server:
        for n in range(1, most + 1):
            sources = "".join(f"  - {{id: cam{i}, uri: '{clip}'}}\n" for i in range(n))
            pipeline = work / f"live{n}.yaml"
            pipeline.write_text(
                f"name: live{n}\nsources:\n{sources}"
                f"model:\n  path: '{model_path}'\n  batch: {{max_size: {max(batch, n)}}}\n"
                "events: {emit: [detections]}\n"
            )
            stats_file = work / f"live{n}.json"
            subprocess.run(
                [sys.executable, "-m", "streamer", "run", str(pipeline), "--redis-url",
                 server.url, "--realtime", "--duration", str(seconds),
                 "--stats-json", str(stats_file)],
                check=True, capture_output=True,
            )  # fmt: skip
            stats = json.loads(stats_file.read_text())
            dropped = sum(stats["frames"]["dropped"].values())
            trials.append({"sources": n, "fps": stats["fps"], "dropped": dropped,
                           "p99_ms": stats["latency_ms"]["p99"]})  # fmt: skip
            if dropped:
                break
    return trials


def plain_loop(clip: Path, model: Model, confidence: float) -> dict[str, Any]:
    """The loop most users write: one frame at a time, BGR, OpenCV letterbox, run, NMS."""
    cpu_before, started, frames = cpu_s(resource.RUSAGE_SELF), time.perf_counter(), 0
    with av.open(str(clip)) as container:
        for av_frame in container.decode(video=0):
            image = av_frame.to_ndarray(format="bgr24")
            plain.detect(model, image, confidence)
            frames += 1
    wall_s = time.perf_counter() - started
    return {
        "fps": round(frames / wall_s, 2),
        "frames": frames,
        "cpu_cores": round((cpu_s(resource.RUSAGE_SELF) - cpu_before) / wall_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=300, help="of the clip, made 720p")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--most-sources", type=int, default=8, help="for (e)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    clip = make_clip(args.clip, args.work_dir / f"{args.clip.stem}-720p-{args.frames}.mp4",
                     args.frames)  # fmt: skip
    model = Model.load(args.model.resolve(), providers=("cpu",))
    input_hw = model.input_hw_for((SIZE[1], SIZE[0]))
    before = inference_alone(model, args.batch, input_hw, seconds=8)
    with tempfile.TemporaryDirectory() as tmp:
        offline = streamer_offline(clip, args.model.resolve(), args.batch, Path(tmp))
    plain = plain_loop(clip, model, 0.25)
    after = inference_alone(model, args.batch, input_hw, seconds=8)
    with tempfile.TemporaryDirectory() as tmp:
        live = live_sources_sustained(clip, args.model.resolve(), args.batch, Path(tmp),
                                      args.most_sources, seconds=15)  # fmt: skip
    sustained = max((t["sources"] for t in live if not t["dropped"]), default=0)
    limit = (before + after) / 2
    results = {
        "clip": f"{clip.name} ({SIZE[0]}x{SIZE[1]}, {offline['frames']} frames)",
        "input_hw": list(input_hw),
        "batch": args.batch,
        "inference_alone_fps": round(limit, 2),
        "inference_alone_before_after": [round(before, 2), round(after, 2)],
        "streamer_offline": offline,
        "plain_loop": plain,
        "streamer_over_inference_alone": round(offline["fps"] / limit, 3),
        "streamer_over_plain_loop": round(offline["fps"] / plain["fps"], 3),
        "live_trials": live,
        "live_sources_sustained": sustained,
    }
    print(f"{results['clip']}, input {input_hw[0]}x{input_hw[1]}, batch {args.batch}\n")
    print(f"{'':<22}{'frames/s':>10}{'CPU cores':>11}{'peak MiB':>10}")
    print(f"{'(a) inference alone':<22}{limit:>10.2f}   (before {before:.1f}, after {after:.1f})")
    for name, r in (("(b) streamer offline", offline), ("(c) plain loop", plain)):
        print(f"{name:<22}{r['fps']:>10.2f}{r['cpu_cores']:>11.2f}{r['peak_rss_mib']:>10}")
    print(f"\n(b)/(a) = {results['streamer_over_inference_alone']} (target >= 0.92)   "
          f"(b)/(c) = {results['streamer_over_plain_loop']} (target >= 1.10)")  # fmt: skip
    for t in live:
        print(f"(e) {t['sources']} live {LIVE_FPS} fps source(s): {t['fps']} fps processed, "
              f"{t['dropped']} dropped, p99 {t['p99_ms']} ms")  # fmt: skip
    print(f"(e) sustained with no drop: {sustained} source(s) of {LIVE_FPS} fps")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
