"""Ultralytics' own predictor on an ONNX file and a clip: frames per second, CPU use and
peak memory, as one line of JSON on stdout.

An optional peer of `benchmarks.efficiency`, run in a child process by whichever Python
has Ultralytics installed (AGPL-3.0: it is never a dependency of streamer, only measured
beside it; `pip install -r benchmarks/requirements-peers.txt` in a separate virtual
environment). It imports nothing of streamer.

    python benchmarks/peer_ultralytics.py MODEL.onnx CLIP.mp4 [--imgsz 640]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("clip")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--iou", type=float, default=0.45)
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks on a closed network

    from ultralytics import YOLO, __version__

    model = YOLO(args.model, task="detect")
    results = model.predict(
        source=args.clip, stream=True, imgsz=args.imgsz, conf=args.conf, iou=args.iou,
        device="cpu", verbose=False,
    )  # fmt: skip
    # Timed from the end of the first frame: model loading and warm-up are not counted,
    # as they are not for the other runs of the benchmark.
    first = next(iter(results))
    input_hw = list(first.orig_shape)
    frames, started, cpu_before = 0, time.perf_counter(), cpu_s()
    for _ in results:
        frames += 1
    wall_s = time.perf_counter() - started
    print(json.dumps({
        "version": __version__,
        "fps": round(frames / wall_s, 2),
        "frames": frames + 1,
        "cpu_cores": round((cpu_s() - cpu_before) / wall_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "frame_hw": input_hw,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
