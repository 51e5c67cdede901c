"""What limits `streamer run` on a GPU machine, where inference alone is far faster than the
pipeline (an H200 ran YOLOv8n at 900-1,500 frames/s on ready tensors, the offline
pipeline at 100-160). Run by benchmarks/gpu_check.sh after the efficiency benchmark; it
works anywhere (on the CPU it answers for the CPU). It prints, one JSON line each:

- the model's first calls on a thread that did not warm it up, after a warm-up on
  another: what a provider's per-thread set-up costs (the pipeline warms the model up on
  its inference worker for that reason);
- one thread decoding the 720p clip, and decoding and preparing it: the most one source
  can give before any hand-off between threads;
- `streamer run` offline on the clip with 1 source and batches closed after 10 ms, with
  50 ms (larger batches if the worker is starved of frames), and with 4 sources: frames
  per second and the busiest threads (CPU milliseconds a frame, and busy fraction).

    python -m benchmarks.gpu_limits --model yolov8n.onnx --clip clip-720p.mp4 --providers cuda
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from benchmarks.efficiency import SIZE, clip_720p, run_pipeline
from streamer.models import Model
from streamer.runtime.messages import Frame
from streamer.stages.preprocess import prepare
from tools.local_redis import RedisServer


def first_calls_on_a_new_thread(model: Model, batch: int) -> dict[str, Any]:
    """Milliseconds of four calls at batch 1 on the warming thread, then on a new one."""
    tensor = np.zeros((1, 3, *model.input_hw_for((SIZE[1], SIZE[0]))), np.float32)
    model.warm_up(batch)

    def four_calls() -> list[float]:
        times = []
        for _ in range(4):
            started = time.perf_counter()
            model.run(tensor)
            times.append(round(1000 * (time.perf_counter() - started), 2))
        return times

    row: dict[str, Any] = {"warming_thread_ms": four_calls()}
    worker = threading.Thread(target=lambda: row.update(new_thread_ms=four_calls()))
    worker.start()
    worker.join()
    return row


def one_thread_rates(clip: Path, model: Model) -> dict[str, float]:
    """Frames per second of one thread decoding the clip, and decoding and preparing it."""
    hw = model.input_hw_for((SIZE[1], SIZE[0]))
    rates = {}
    for step in ("decode", "decode_and_prepare"):
        reformatter, frames, started = VideoReformatter(), 0, time.perf_counter()
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # as streamer decodes files
            for i, decoded in enumerate(container.decode(stream)):
                if step == "decode_and_prepare":
                    frame = Frame("clip", i, None, 0, 0.0, None, decoded, 0.0)
                    prepare(frame, model.spec, hw, reformatter)
                frames += 1
        rates[f"{step}_fps"] = round(frames / (time.perf_counter() - started), 1)
    return rates


def offline_runs(
    clip: Path, model_path: Path, providers: str, batch: int, rounds: int
) -> list[dict[str, Any]]:
    """`streamer run` offline per (sources, max_wait_ms), alternated over `rounds`."""
    variants = [(1, 10), (1, 50), (4, 10)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        for _, (sources, wait_ms) in itertools.product(range(rounds), variants):
            listed = "".join(f"  - {{id: c{i}, uri: '{clip}'}}\n" for i in range(sources))
            pipeline = Path(tmp) / "limits.yaml"
            pipeline.write_text(
                f"name: limits\nsources:\n{listed}model:\n  path: '{model_path}'\n"
                f"  providers: [{providers}]\n"
                f"  batch: {{max_size: {batch}, max_wait_ms: {wait_ms}}}\n"
                "events: {emit: [detections]}\n"
            )
            stats = run_pipeline(pipeline, server.url)
            busiest = dict(itertools.islice(stats.get("threads", {}).items(), 4))
            rows.append({"sources": sources, "max_wait_ms": wait_ms, "fps": stats["fps"],
                         "cpu_cores": stats["cpu_cores"], "threads": busiest})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True, help="made 720p as benchmarks do")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--providers", default="cuda")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    clip = clip_720p(args.clip, args.work_dir, args.frames)
    model_path = args.model.resolve()
    model = Model.load(model_path, providers=tuple(args.providers.split(",")), workers=1)
    results: dict[str, Any] = {"providers": model.providers}
    results["first_calls"] = first_calls_on_a_new_thread(model, args.batch)
    print(json.dumps(results["first_calls"]), flush=True)
    results["one_thread"] = one_thread_rates(clip, model)
    print(json.dumps(results["one_thread"]), flush=True)
    del model  # its GPU memory, before the pipelines load their own
    results["offline"] = offline_runs(clip, model_path, args.providers, args.batch, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
