"""Latency under overload: a live RTSP camera at about twice what the machine can process.

Measured side by side in one run, with the same model, clip and input shape:

- inference alone: ONNX Runtime on ready tensors at batch 1, while the camera server
  streams (its encoder shares the machine), the limit, measured just before and just
  after the streamer run;
- streamer: `streamer run` on the live stream (leaky queues, deadlines);
- a plain loop as many users write it: a reader thread puts every decoded frame on an
  unbounded queue, the main loop letterboxes, runs the model and NMS, one frame at a time.

For each it prints glass-to-result latency (p50/p99) per time window, frames processed
per second and frames dropped, then the ratios; `--json FILE` writes the same figures.

    python -m benchmarks.overload --model ../shared/assets/models/yolov8n.onnx \\
        --clip ../shared/assets/videos/one-by-one-person-detection.mp4 --seconds 30

It needs redis-server and GStreamer's RTSP server (scripts/setup.sh test installs both).
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import redis

from benchmarks import plain
from streamer.models import Model
from tools.local_redis import RedisServer
from tools.rtsp import RtspServer

WINDOW_S = 5.0
OPEN_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32768"}


def inference_only_fps_beside(url: str, model: Model, frame_hw: tuple[int, int]) -> float:
    """Inference alone while the camera server streams to a client that only reads packets:
    the server's encoding costs CPU on this machine too, as it does during the runs."""
    stop = threading.Event()

    def drain() -> None:
        with av.open(url, options=OPEN_OPTIONS, timeout=(5, 5)) as container:
            for _packet in container.demux(video=0):
                if stop.is_set():
                    return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        return plain.inference_alone(model, 1, model.input_hw_for(frame_hw), seconds=5)
    finally:
        stop.set()
        reader.join(timeout=10)


def windows(samples: list[tuple[float, float]], start: float) -> list[dict[str, float]]:
    """(time, latency ms) samples -> p50/p99 per WINDOW_S window from `start`."""
    out = []
    by_window: dict[int, list[float]] = {}
    for t, ms in samples:
        by_window.setdefault(int((t - start) // WINDOW_S), []).append(ms)
    for index in sorted(by_window):
        values = np.array(by_window[index])
        out.append({
            "from_s": index * WINDOW_S,
            "frames": len(values),
            "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1),
        })  # fmt: skip
    return out


def model_yaml(model_path: Path, batch: int = 1, extra: str = "") -> str:
    """The `model:` section of a benchmark pipeline; `extra` adds indented lines."""
    return f"model:\n  path: '{model_path}'\n  batch: {{max_size: {batch}}}\n{extra}"


def run_streamer(url: str, model: str, seconds: float, budget_ms: int) -> dict[str, Any]:
    """`streamer run` on the camera at `url` for `seconds`; `model` is the `model:` section."""
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        pipeline = Path(tmp) / "bench.yaml"
        pipeline.write_text(
            f"name: bench\nsources:\n  - {{id: cam1, uri: '{url}'}}\n{model}"
            f"realtime: {{max_latency_ms: {budget_ms}}}\n"
            # A detections event per frame carries the frame's capture time: the latency.
            "events: {emit: [detections]}\n"
        )
        stats_file = Path(tmp) / "stats.json"
        subprocess.run(
            [sys.executable, "-m", "streamer", "run", str(pipeline), "--redis-url", server.url,
             "--duration", str(seconds), "--stats-json", str(stats_file)],
            check=True, capture_output=True, timeout=seconds + 60,
        )  # fmt: skip
        stats = json.loads(stats_file.read_text())
        client = redis.Redis.from_url(server.url)
        samples = []
        # redis-py types xrange for its asyncio client too: this one returns the entries.
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]], client.xrange("streamer:bench:events")
        )
        for _id, fields in entries:
            event = json.loads(fields[b"event"])
            if event["type"] == "detections":
                captured = event["frame"]["captured_at"]
                samples.append((captured, (event["emitted_at"] - captured) * 1000))
        client.close()
    start = samples[0][0] if samples else 0.0
    return {
        "fps": stats["fps"],
        "processed": stats["frames"]["processed"],
        "dropped": sum(stats["frames"]["dropped"].values()),
        "latency_ms": stats["latency_ms"],
        "windows": windows(samples, start),
    }


def run_plain_loop(url: str, model: Model, seconds: float, confidence: float) -> dict[str, Any]:
    """Decode everything into an unbounded queue; process one frame at a time."""
    frames: queue.Queue[tuple[float, np.ndarray]] = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        with av.open(url, options=OPEN_OPTIONS, timeout=(5, 5)) as container:
            for frame in container.decode(video=0):
                frames.put((time.time(), frame.to_ndarray(format="bgr24")))
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            arrived, image = frames.get(timeout=1)
        except queue.Empty:
            continue
        plain.detect(model, image, confidence)
        samples.append((arrived, (time.time() - arrived) * 1000))
    stop.set()
    elapsed = time.monotonic() - started
    all_ms = np.array([ms for _, ms in samples])
    return {
        "fps": round(len(samples) / elapsed, 2),
        "processed": len(samples),
        "dropped": 0,
        "queued_at_end": frames.qsize(),
        "latency_ms": {
            "p50": round(float(np.percentile(all_ms, 50)), 1),
            "p99": round(float(np.percentile(all_ms, 99)), 1),
            "max": round(float(all_ms.max()), 1),
        },
        "windows": windows(samples, samples[0][0] if samples else 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--budget-ms", type=int, default=500)
    parser.add_argument("--overload", type=float, default=2.0, help="stream fps / model fps")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    model = Model.load(args.model.resolve(), providers=("cpu",))
    with av.open(str(args.clip)) as container:
        stream = container.streams.video[0]
        frame_hw = (stream.codec_context.height, stream.codec_context.width)
    idle_fps = plain.inference_alone(model, 1, model.input_hw_for(frame_hw), seconds=5)
    stream_fps = max(1, round(idle_fps * args.overload))
    results: dict[str, Any] = {"stream_fps": stream_fps}
    with RtspServer({"cam1": args.clip}, fps=stream_fps) as camera:
        # This machine's speed drifts from minute to minute (shared cores): the limit is
        # measured right before and right after the streamer run and averaged.
        before = inference_only_fps_beside(camera.url("cam1"), model, frame_hw)
        results["streamer"] = run_streamer(
            camera.url("cam1"), model_yaml(args.model.resolve()), args.seconds, args.budget_ms
        )
        after = inference_only_fps_beside(camera.url("cam1"), model, frame_hw)
        limit_fps = (before + after) / 2
        results["inference_only_fps"] = round(limit_fps, 2)
        results["inference_only_fps_before_after"] = [round(before, 2), round(after, 2)]
        print(f"inference alone: {idle_fps:.1f} fps on an idle machine; beside the camera "
              f"server {before:.1f} fps before the streamer run, {after:.1f} after; "
              f"camera served at {stream_fps} fps")  # fmt: skip
        # The plain loop runs one session, as a hand-written loop does.
        single = Model.load(args.model.resolve(), providers=("cpu",), workers=1)
        results["plain_loop"] = run_plain_loop(camera.url("cam1"), single, args.seconds, 0.25)
    results["streamer_fps_over_inference_only"] = round(results["streamer"]["fps"] / limit_fps, 3)

    for name in ("streamer", "plain_loop"):
        r = results[name]
        latency = r["latency_ms"]
        print(f"\n{name}: {r['fps']} fps processed, {r['dropped']} dropped, "
              f"latency p50 {latency['p50']} ms p99 {latency['p99']} ms")  # fmt: skip
        for w in r["windows"]:
            print(f"  {w['from_s']:>5.0f} s  {w['frames']:>4} frames  "
                  f"p50 {w['p50_ms']:>8.1f} ms  p99 {w['p99_ms']:>8.1f} ms")  # fmt: skip
    print(f"\nstreamer fps / inference-only fps: {results['streamer_fps_over_inference_only']}")
    print(f"streamer p99 {results['streamer']['latency_ms']['p99']} ms "
          f"(budget {args.budget_ms} ms); plain loop p99 "
          f"{results['plain_loop']['latency_ms']['p99']} ms")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
