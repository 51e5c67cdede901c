"""Cameras per machine: the most live 720p 15 fps cameras one machine sustains with no
frame dropped and p99 glass-to-event latency within 500 ms, per model precision, with and
without motion gating, and what a camera costs in CPU time and money.

The footage is a room where people come and go, still about half of the time: the person
clip (real footage) cut where its room is empty, each stretch with people followed by as
long a stretch of the same empty room (the clip's own empty frames, played back and forth,
so the still picture has the camera's real noise), made 720p 15 fps H.264 with a keyframe
every 2 s. Each camera plays it from its own starting point (copies rotated by a share of
the clip, cut at keyframes), so at any moment some cameras are busy and some still, as on
a real site. Every variant is run in one process per trial (`streamer run --realtime`),
side by side in one run: float, int8 (quantized on the clip, as `streamer quantize`
does), on each provider asked for (`--providers cpu,openvino`), each with `motion:` off
and on. A camera's cost is the process's CPU time over the cameras and the trial's time
(with the most cameras sustained, else with one), and what that CPU time costs a month
at `--core-hour-usd`.

    python -m benchmarks.cameras --model ../shared/assets/models/yolov8n.onnx \\
        --clip ../shared/assets/videos/one-by-one-person-detection.mp4 --core-hour-usd 0.02
    (and again with --input-size 320 --start 3: the model at 320 on its long side)

It needs redis-server (scripts/setup.sh test installs it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.video.reformatter import VideoReformatter

from benchmarks.efficiency import LIVE_FPS, SIZE, run_pipeline
from benchmarks.overload import model_yaml
from streamer.analytics.motion import MotionDetector, MotionSettings
from streamer.models.quantize import quantize_and_check
from streamer.quality.picture import luma
from tools.local_redis import RedisServer

BUDGET_MS = 500
MIN_EMPTY_FRAMES = 7  # a run of still frames this long is a moment the room is empty
HOURS_PER_MONTH = 730


def still_runs(clip: Path) -> list[tuple[int, int]]:
    """(first, last) frame index of each run of at least MIN_EMPTY_FRAMES frames in which
    the motion detector saw nothing move."""
    detector = MotionDetector(MotionSettings())
    reformatter = VideoReformatter()
    runs: list[tuple[int, int]] = []
    start = None
    with av.open(str(clip)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            moved = detector.observe(luma(frame, reformatter), float(frame.time or i)).moved
            if not moved and start is None:
                start = i
            elif moved and start is not None:
                if i - start >= MIN_EMPTY_FRAMES:
                    runs.append((start, i - 1))
                start = None
    return runs


def comings_and_goings(src: Path, dst: Path) -> dict[str, Any]:
    """Writes the footage described at the top of this file; what it is made of."""
    empty = still_runs(src)
    first_empty = empty[0]
    with av.open(str(src)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    room = frames[first_empty[0] : first_empty[1] + 1]
    back_and_forth = itertools.cycle(room + room[-2:0:-1])
    # Cut at the middle of each empty moment after the first.
    cuts = [(a + b) // 2 for a, b in empty[1:]] + [len(frames)]
    order: list[Any] = []
    busy = still = 0
    begin = first_empty[1] + 1
    for cut in cuts:
        if cut <= begin:
            continue
        order += frames[begin:cut]
        order += [next(back_and_forth) for _ in range(cut - begin)]
        busy, still, begin = busy + cut - begin, still + cut - begin, cut
    part = dst.with_suffix(".part.mp4")
    with av.open(str(part), "w") as out:
        rate = Fraction(LIVE_FPS)
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.time_base = 1 / rate
        stream.options = {"crf": "23", "preset": "fast", "g": str(2 * LIVE_FPS)}
        for i, picture in enumerate(order):
            frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
            frame = frame.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p")
            frame.pts, frame.time_base = i, 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    part.rename(dst)
    return {"frames": len(order), "seconds": round(len(order) / LIVE_FPS, 1),
            "busy_frames": busy, "still_frames": still, "cuts": len(cuts)}  # fmt: skip


def rotated(clip: Path, share: float, dst: Path) -> Path:
    """`clip` played from the keyframe nearest `share` of its length, its beginning after
    its end: the same footage from another starting point, without re-encoding."""
    with av.open(str(clip)) as inp:
        packets = [p for p in inp.demux(video=0) if p.size and p.pts is not None]
        keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
        start = min(keyframes, key=lambda k: abs(k - share * len(packets)))
        pts = [int(p.pts or 0) for p in packets]  # none is None: filtered above
        first_pts = min(pts[start:])
        total = max(t + (p.duration or 0) for t, p in zip(pts, packets, strict=True))
        with av.open(str(dst), "w") as out:
            stream = out.add_stream_from_template(inp.streams.video[0])
            for i, p in enumerate(packets[start:] + packets[:start]):
                shift = -first_pts if i < len(packets) - start else total - first_pts
                p.pts, p.dts = int(p.pts or 0) + shift, (None if p.dts is None else p.dts + shift)
                p.stream = stream
                out.mux(p)
    return dst


def cameras(clip: Path, n: int, work: Path) -> Iterator[Path]:
    for i in range(n):
        copy = work / f"{clip.stem}-from-{i}-of-{n}.mp4"
        yield copy if copy.exists() else rotated(clip, i / n, copy)


@dataclass(frozen=True)
class Variant:
    provider: str  # cpu, openvino
    precision: str  # float, int8
    model: Path
    motion: bool
    input_size: int | None = None  # the model's long side (None: its own)


def trial(clip: Path, variant: Variant, n: int, seconds: float, server: RedisServer,
          work: Path) -> dict[str, Any]:  # fmt: skip
    sources = "".join(
        f"  - {{id: cam{i}, uri: '{c}'}}\n" for i, c in enumerate(cameras(clip, n, work))
    )
    v = variant
    pipeline = work / f"cams-{v.provider}-{v.model.stem}-{v.input_size}-{v.motion}-{n}.yaml"
    extra = f"  providers: [{v.provider}]\n" + (
        f"  input_size: {v.input_size}\n" if v.input_size else ""
    )
    model = model_yaml(v.model, max(4, n), extra=extra)
    motion = str(v.motion).lower()
    pipeline.write_text(
        f"name: cams\nsources:\n{sources}{model}"
        f"realtime: {{max_latency_ms: {BUDGET_MS}}}\n"
        f"events: {{emit: [object_appeared, object_left]}}\nmotion: {motion}\n"
    )
    stats = run_pipeline(pipeline, server.url, "--realtime", "--duration", str(seconds))
    frames = stats["frames"]
    dropped = sum(frames["dropped"].values())
    p99 = stats["latency_ms"]["p99"]
    return {
        "cameras": n,
        "sustained": dropped == 0 and p99 <= BUDGET_MS,
        "processed": frames["processed"],
        "still_share": round(frames["still"] / max(frames["processed"], 1), 3),
        "dropped": dropped,
        "p99_ms": p99,
        "cpu_cores": stats["cpu_cores"],
        "cpu_ms_per_camera_s": round(1000 * stats["cpu_cores"] / n, 1),
    }


def most_sustained(
    clip: Path, variant: Variant, start: int, most: int, seconds: float,
    server: RedisServer, work: Path,
) -> list[dict[str, Any]]:  # fmt: skip
    """Trials from `start` cameras up while they are sustained (down while not)."""
    trials = [trial(clip, variant, start, seconds, server, work)]
    step = 1 if trials[0]["sustained"] else -1
    n = start + step
    while 1 <= n <= most:
        trials.append(trial(clip, variant, n, seconds, server, work))
        if trials[-1]["sustained"] != trials[0]["sustained"]:
            break
        n += step
    return sorted(trials, key=lambda t: t["cameras"])


def sustained(trials: list[dict[str, Any]]) -> int:
    return max((t["cameras"] for t in trials if t["sustained"]), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True, help="the person clip")
    parser.add_argument(
        "--seconds",
        type=float,
        default=60,
        help="each trial: one camera sees a busy and a still stretch",
    )
    parser.add_argument("--most", type=int, default=12, help="cameras tried at most")
    parser.add_argument("--core-hour-usd", type=float, default=0.02,
                        help="a CPU core's price an hour: the cost per camera-month")  # fmt: skip
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--providers", default="cpu", help="comma-separated: cpu, openvino")
    parser.add_argument("--input-size", type=int, help="the model's input long side, e.g. 320")
    parser.add_argument("--start", type=int, default=1, help="cameras of the first trial")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    footage = args.work_dir / f"{args.clip.stem}-comings-and-goings-720p.mp4"
    made = None if footage.exists() else comings_and_goings(args.clip, footage)
    model = args.model.resolve()
    models = {"float": model}
    if not args.no_int8:
        int8 = args.work_dir / f"{model.stem}.int8.onnx"
        if not int8.exists():
            quantize_and_check(model, int8, [footage])
        models["int8"] = int8
    results: dict[str, Any] = {
        "footage": made or footage.name, "model": model.name, "input_size": args.input_size,
        "rows": [],
    }  # fmt: skip
    variants = [
        Variant(provider, precision, path, motion, args.input_size)
        for provider in args.providers.split(",")
        for precision, path in models.items()
        for motion in (False, True)
    ]
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        start = args.start
        for variant in variants:
            trials = most_sustained(footage, variant, start, args.most, args.seconds, server,
                                    args.work_dir)  # fmt: skip
            best = sustained(trials)
            # What a camera costs where the most were sustained (else with one camera).
            at = next((t for t in trials if t["cameras"] == max(best, 1)), trials[0])
            cpu_ms = at["cpu_ms_per_camera_s"]
            row = {
                "provider": variant.provider, "precision": variant.precision,
                "motion": variant.motion, "cameras": best, "cpu_ms_per_camera_s": cpu_ms,
                "usd_per_camera_month": round(
                    cpu_ms / 1000 * HOURS_PER_MONTH * args.core_hour_usd, 2),
                "trials": trials,
            }  # fmt: skip
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
            start = max(best, 1)
    report(results, args.core_hour_usd)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any], core_hour_usd: float) -> None:
    print(f"\nlive 720p15 cameras, {results['model']} (input long side "
          f"{results['input_size'] or 'its own'}), p99 <= {BUDGET_MS} ms, no drops")  # fmt: skip
    print(f"| provider | model | motion gating | cameras | CPU ms per camera-second | "
          f"$ per camera-month at ${core_hour_usd}/core-hour |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in results["rows"]:
        print(f"| {r['provider']} | {r['precision']} | {'on' if r['motion'] else 'off'} | "
              f"{r['cameras']} | {r['cpu_ms_per_camera_s']} | "
              f"{r['usd_per_camera_month']} |")  # fmt: skip


if __name__ == "__main__":
    main()
