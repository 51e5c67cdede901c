"""Frames kept on the GPU, measured on a GPU machine (run by benchmarks/gpu_check.sh).

Sections, each printed as one JSON line and gathered in `--json`:

- `check`: the GPU path against the CPU path: CuPy's prepared batch against NumPy's (the
  same code), and `streamer run` offline on the 1080p clip with `prepare_on: gpu` and
  `hwaccel: cuda` against `prepare_on: cpu` without: the same boxes (same class, IoU >=
  0.9) on at least 98 % of them, and the same objects. Exit 1 when it fails.
- `decoders`: the hardware decoders' ceiling: N threads each decoding the clip with
  NVDEC, frames kept on the GPU (nothing downloaded), 1080p frames per second in all.
- `inference`: the model alone on batches already in the session's GPU buffer.
- `offline`: `streamer run` offline on S copies of the clip: CPU preparation and software
  decoding, GPU preparation, GPU preparation with NVDEC; frames per second, and as a
  share of inference alone.
- `live`: the most 1080p30 cameras (the clip paced as cameras) sustained with no dropped
  frame and p99 <= 300 ms, YOLOv8n on every frame, in one process and in shards.

    python -m benchmarks.gpu_path clip --src person.mp4 --dst clip-1080p30.mp4  # anywhere
    python -m benchmarks.gpu_path run --model yolov8n.onnx --clip clip-1080p30.mp4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

from benchmarks.efficiency import make_clip, run_pipeline
from streamer.analytics.boxes import letterbox_geometry, match_by_iou
from streamer.device.arrays import why_no_cuda
from streamer.device.prepare import BatchPreparer, blank_planes, planes_of
from streamer.events.event import Event, EventType
from streamer.models import Model
from streamer.pipeline.lifecycle import Pipeline
from tools.local_redis import RedisServer

FPS = 30
SIZE = (1920, 1080)
BUDGET_MS = 300
BATCH = 16


def pipeline_yaml(
    model: Path, uris: list[str], prepare_on: str, hwaccel: str, extra: str = ""
) -> str:
    sources = "".join(
        f"  - {{id: cam{i}, uri: '{u}', hwaccel: {hwaccel}}}\n" for i, u in enumerate(uris)
    )
    return (
        f"name: gpu\nsources:\n{sources}"
        f"model:\n  path: '{model}'\n  providers: [cuda]\n  prepare_on: {prepare_on}\n"
        f"  batch: {{max_size: {BATCH}, max_wait_ms: 10}}\n"
        f"events: {{emit: [detections, object_appeared, object_left]}}\n{extra}"
    )


def check(model_path: Path, clip: Path, work: Path) -> dict[str, Any]:
    """The GPU path gives what the CPU path gives (see the module's doc)."""
    model = Model.load(model_path, providers=("cuda",), prepare_on="gpu")
    device = model.array_device
    if device is None:
        return {"section": "check", "passed": False, "why": why_no_cuda(0)}
    with av.open(str(clip)) as container:
        pictures = [p for i, p in zip(range(8), container.decode(video=0), strict=False)]
    hw = model.input_hw_for((SIZE[1], SIZE[0]))
    lb = [letterbox_geometry((SIZE[1], SIZE[0]), hw, model.spec.centered)] * len(pictures)
    on_host = np.empty((len(pictures), 3, *hw), np.float32)
    BatchPreparer(np).into(on_host, [planes_of(p, np) for p in pictures], lb, model.spec)  # type: ignore[misc]
    on_gpu = device.xp.empty((len(pictures), 3, *hw), device.xp.float32)
    gpu_planes = [planes_of(p, np) for p in pictures]
    BatchPreparer(device.xp).into(on_gpu, gpu_planes, lb, model.spec)  # type: ignore[arg-type]
    prepared_diff = float(np.abs(device.xp.asnumpy(on_gpu) - on_host).max() / model.spec.scale)

    def events_of(prepare_on: str, hwaccel: str) -> list[Event]:
        path = work / f"check-{prepare_on}-{hwaccel}.yaml"
        path.write_text(pipeline_yaml(model_path, [str(clip)], prepare_on, hwaccel, "sink: none\n"))
        events: list[Event] = []
        Pipeline.from_file(path, max_frames=300, on_event=events.append).run()
        return events

    cpu, gpu = events_of("cpu", "none"), events_of("gpu", "cuda")
    boxes = matched = 0
    cpu_frames = [e for e in cpu if e.type is EventType.DETECTIONS]
    gpu_frames = [e for e in gpu if e.type is EventType.DETECTIONS]
    for a, b in zip(cpu_frames, gpu_frames, strict=True):
        xyxy = [np.array([o.bbox for o in e.objects], np.float32).reshape(-1, 4) for e in (a, b)]
        labels = [np.array([o.label for o in e.objects]) for e in (a, b)]
        boxes += len(a.objects)
        matched += len(match_by_iou(xyxy[0], labels[0], xyxy[1], labels[1], 0.9))
    lifecycle = [
        [e.type.value for e in run if e.type is not EventType.DETECTIONS] for run in (cpu, gpu)
    ]
    share = matched / max(boxes, 1)
    return {
        "section": "check",
        "passed": share >= 0.98 and lifecycle[0] == lifecycle[1] and prepared_diff < 0.01,
        "prepared_max_diff_grey_levels": round(prepared_diff, 4),
        "frames": len(cpu_frames),
        "boxes": boxes,
        "matched_share": round(share, 4),
        "object_events": [len(x) for x in lifecycle],
    }


def decode_on_gpu(clip: Path, counts: list[int], slot: int, stop: threading.Event) -> None:
    """Decode `clip` over and over with NVDEC, frames left on the GPU, counting them."""
    while not stop.is_set():
        hwaccel = av.codec.hwaccel.HWAccel("cuda", is_hw_owned=True)
        with av.open(str(clip), hwaccel=hwaccel) as container:
            for _ in container.decode(video=0):
                counts[slot] += 1
                if stop.is_set():
                    return


def decoders(clip: Path, threads: list[int], seconds: float) -> dict[str, Any]:
    """Frames per second that N threads decoding with NVDEC (frames left on the GPU) reach."""
    rows = []
    for n in threads:
        counts = [0] * n
        stop = threading.Event()
        workers = [
            threading.Thread(target=decode_on_gpu, args=(clip, counts, i, stop), daemon=True)
            for i in range(n)
        ]
        for w in workers:
            w.start()
        time.sleep(2.0)  # every decoder open and running
        before, started = sum(counts), time.perf_counter()
        time.sleep(seconds)
        fps = (sum(counts) - before) / (time.perf_counter() - started)
        stop.set()
        for w in workers:
            w.join(30)
        rows.append({"threads": n, "fps": round(fps, 1)})
    ceiling = max(r["fps"] for r in rows)
    return {"section": "decoders", "clip": f"{SIZE[0]}x{SIZE[1]}", "rows": rows,
            "ceiling_fps": ceiling}  # fmt: skip


def inference(model_path: Path, seconds: float) -> dict[str, Any]:
    """The model alone on batches of 1080p pictures already on the GPU, prepared in place."""
    model = Model.load(model_path, providers=("cuda",), prepare_on="gpu")
    device = model.array_device
    if device is None:
        return {"section": "inference", "why": why_no_cuda(0)}
    model.warm_up(BATCH)
    hw = model.input_hw_for((SIZE[1], SIZE[0]))
    pictures = [blank_planes(device.xp, (SIZE[1], SIZE[0]))] * BATCH
    lb = [letterbox_geometry((SIZE[1], SIZE[0]), hw, model.spec.centered)] * BATCH
    rows = {}
    for name, call in {
        "prepared and run": lambda: model.run_prepared(pictures, lb, hw),
        "run on a ready batch": lambda: model.run(np.zeros((BATCH, 3, *hw), np.float32)),
    }.items():
        rows[name] = round(BATCH * calls_per_s(call, seconds), 1)
    return {"section": "inference", "batch": BATCH, "input": list(hw), "fps": rows}


def calls_per_s(call: Callable[[], object], seconds: float) -> float:
    call()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        count += 1
    return count / (time.perf_counter() - started)


def offline(
    model: Path, clip: Path, copies: int, frames: int, alone: dict[str, float],
    server: RedisServer, work: Path,
) -> dict[str, Any]:  # fmt: skip
    """`streamer run` offline on `copies` sources of `frames` frames each, per way of
    preparing; each row's frames per second also as a share of each inference-alone
    figure in `alone`."""
    rows = []
    for prepare_on, hwaccel in (("cpu", "none"), ("gpu", "none"), ("gpu", "cuda")):
        path = work / f"offline-{prepare_on}-{hwaccel}.yaml"
        path.write_text(pipeline_yaml(model, [str(clip)] * copies, prepare_on, hwaccel))
        stats = run_pipeline(path, server.url, "--max-frames", str(frames))
        fps = stats["fps"]
        rows.append({
            "prepare_on": prepare_on, "hwaccel": hwaccel, "fps": fps,
            "share_of_inference_alone": {k: round(fps / v, 3) for k, v in alone.items() if v},
            "cpu_cores": stats["cpu_cores"], "threads": stats.get("threads"),
        })  # fmt: skip
    return {"section": "offline", "sources": copies, "frames_per_source": frames, "rows": rows}


def live_trial(model: Path, clip: Path, n: int, shards: int, seconds: float,
               server: RedisServer, work: Path) -> dict[str, Any]:  # fmt: skip
    path = work / f"live-{n}-{shards}.yaml"
    extra = f"realtime: {{max_latency_ms: {BUDGET_MS}}}\nworkers: {shards}\n"
    path.write_text(pipeline_yaml(model, [str(clip)] * n, "gpu", "cuda", extra))
    stats = run_pipeline(path, server.url, "--realtime", "--duration", str(seconds))
    frames = stats["frames"]
    dropped = sum(frames["dropped"].values())
    p99 = stats["latency_ms"]["p99"]
    return {"cameras": n, "shards": shards, "sustained": dropped == 0 and p99 <= BUDGET_MS,
            "processed": frames["processed"], "dropped": dropped, "p99_ms": p99,
            "cpu_cores": stats["cpu_cores"]}  # fmt: skip


def live(model: Path, clip: Path, start: int, shards: int, seconds: float,
         server: RedisServer, work: Path) -> dict[str, Any]:  # fmt: skip
    """Doubling from `start` cameras while sustained, then halving the gap (bisection)."""
    trials = {}

    def sustained(n: int) -> bool:
        trials[n] = live_trial(model, clip, n, shards, seconds, server, work)
        print(json.dumps(trials[n]), flush=True)
        return bool(trials[n]["sustained"])

    good, bad = 0, None
    n = start
    while bad is None and n <= 256:
        if sustained(n):
            good, n = n, 2 * n
        else:
            bad = n
    while bad is not None and bad - good > max(1, good // 8):
        middle = (good + bad) // 2
        if sustained(middle):
            good = middle
        else:
            bad = middle
    return {"section": "live", "shards": shards, "most_cameras": good,
            "trials": [trials[k] for k in sorted(trials)]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    clip = sub.add_parser("clip", help="make the 1080p30 clip (on any machine)")
    clip.add_argument("--src", type=Path, required=True)
    clip.add_argument("--dst", type=Path, required=True)
    run = sub.add_parser("run", help="the sections, on a GPU machine")
    run.add_argument("--model", type=Path, required=True)
    run.add_argument("--clip", type=Path, required=True, help="made by `clip`")
    run.add_argument("--sections", default="check,decoders,inference,offline,live")
    run.add_argument("--decoder-threads", default="1,2,4,8,16,32")
    run.add_argument("--offline-sources", type=int, default=8)
    run.add_argument("--offline-frames", type=int, default=300, help="per source")
    run.add_argument("--live-start", type=int, default=16)
    run.add_argument("--live-seconds", type=float, default=20)
    run.add_argument("--shards", default="1,2", help="live runs: processes sharing the GPU")
    run.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "gpu-path")
    run.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.command == "clip":
        # The person clip at 1080p30: every frame distinct, as a real 30 fps camera.
        print(make_clip(args.src, args.dst, None, SIZE, FPS))
        return
    args.model, args.clip = args.model.resolve(), args.clip.resolve()  # pipeline files elsewhere
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    results: list[dict[str, Any]] = []

    def record(result: dict[str, Any]) -> None:
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))

    if "check" in sections:
        record(check(args.model, args.clip, work))
    if "decoders" in sections:
        threads = [int(n) for n in args.decoder_threads.split(",")]
        record(decoders(args.clip, threads, seconds=5))
    alone: dict[str, float] = {}
    if "inference" in sections:
        record(inference(args.model, seconds=3))
        alone = results[-1].get("fps", {})
    with RedisServer(work / "redis") as server:
        if "offline" in sections:
            record(offline(args.model, args.clip, args.offline_sources, args.offline_frames,
                           alone, server, work))  # fmt: skip
        if "live" in sections:
            for shards in (int(s) for s in args.shards.split(",")):
                record(live(args.model, args.clip, args.live_start, shards, args.live_seconds,
                            server, work))  # fmt: skip
    if any(r["section"] == "check" and not r["passed"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
