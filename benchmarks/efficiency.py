"""Pipeline efficiency, in one command: streamer against inference alone, a plain loop and
Ultralytics' predictor, offline and live, float and int8.

Measured side by side in one run, on the same model, clip and input shape (DESIGN.md
section 10):

- (a) inference alone: ONNX Runtime on ready tensors at the pipeline's batch size and
  input shape, run as pipelines run it (`model.workers` sessions at once), the limit (and
  one session alone, as a hand-written loop runs the model); measured before and after
  each round of (b), (c) and the peer;
  every ratio is taken within its round and the median over the rounds is reported
  (`--rounds`, default 3), since this machine's speed drifts by a third within minutes;
- (b) streamer offline: `streamer run` on the file, every frame;
- (c) the plain loop a user writes by hand: decode to BGR, letterbox with OpenCV to the
  same input shape, run, NMS, one frame at a time;
- Ultralytics' own predictor on the same ONNX file and clip, where `--ultralytics-python`
  has it installed (an optional peer, never a dependency: benchmarks/requirements-peers.txt);
- (d) streamer live: one RTSP camera (GStreamer's server) at twice (a)'s rate, 500 ms
  budget: frames processed and dropped, latency;
- (e) how many live 15 fps sources of the clip one process sustains with no frame dropped:
  1, 2, 3... copies played in real time (`--realtime`, paced like cameras) until frames
  are dropped (`benchmarks.cameras` measures the same on footage that is still half of
  the time, with motion gating, and what a camera costs);
- with `--int8`: the model quantized on the clip (as `streamer quantize` does), its
  inference alone beside the float model's, its agreement, and (e) again with it;
  `--int8-check MODEL` quantizes another model on the given clip and reports its speed-up
  and agreement (for a model with trained weights: the int8 targets are set on YOLOX-nano).

It prints frames per second, the ratios (b)/(a), (b)/(c) and (b)/Ultralytics, CPU use
(cores busy on average) and peak memory, as a table and, with `--json FILE`, as JSON; and
the CPU cost per frame of each step (decode, prepare, inference, output and NMS), which
gives the most (b)/(a) can be on these cores and names the largest cost beside inference. The
clip is made 720p 15 fps H.264 from the given one first (cached under --work-dir).

    python -m benchmarks.efficiency --model ../shared/assets/models/yolov8n.onnx \\
        --clip ../shared/assets/videos/one-by-one-person-detection.mp4 --int8 \\
        --int8-check ../shared/assets/models/yolox_nano.onnx

It needs redis-server and GStreamer's RTSP server (scripts/setup.sh test installs both).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from benchmarks import overload, plain
from streamer.analytics.boxes import nms
from streamer.models import Model
from streamer.models.quantize import quantize_and_check
from streamer.runtime.messages import Frame
from streamer.stages.preprocess import tensor_of
from tools.local_redis import RedisServer
from tools.rtsp import RtspServer, rtsp_server_available

SIZE = (1280, 720)
LIVE_FPS = 15


def make_clip(
    src: Path,
    dst: Path,
    frames: int | None,
    size: tuple[int, int] = SIZE,
    fps: int = LIVE_FPS,
) -> Path:
    """The first `frames` frames of `src` (None: all), scaled to `size` and retimed to
    `fps` (every frame kept and distinct: decoding costs what such a camera costs), as
    H.264 with a keyframe every 2 s, as a camera sends."""
    if dst.is_file():
        return dst
    part = dst.with_suffix(".part.mp4")
    with av.open(str(src)) as inp, av.open(str(part), "w") as out:
        rate = Fraction(fps)
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.time_base = 1 / rate
        stream.options = {"crf": "23", "preset": "fast", "g": str(2 * fps)}
        for i, frame in enumerate(inp.decode(video=0)):
            if frames is not None and i >= frames:
                break
            scaled = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            # Retimed: PyAV rescales pts from the frame's own time base.
            scaled.pts, scaled.time_base = i, 1 / rate
            out.mux(stream.encode(scaled))
        out.mux(stream.encode(None))
    part.rename(dst)
    return dst


def clip_720p(given: Path, work_dir: Path, frames: int) -> Path:
    """`make_clip` of `given`, kept in `work_dir` for the next run."""
    work_dir.mkdir(parents=True, exist_ok=True)
    return make_clip(given, work_dir / f"{given.stem}-720p-{frames}.mp4", frames)


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class ThreadCpu:
    """CPU seconds of each thread of a running `streamer run`, from when its sources start
    (start-up, model loading and warm-up left out) until it ends, read from /proc (Linux)
    every `POLL_S`; threads that end keep their last reading. Stage threads are named by
    streamer, FFmpeg's decoding threads by FFmpeg; numbered threads of one kind (`infer_0`,
    `infer_1`; `av:h264:df0`...) are summed under one name (`infer_*`). `main` is the main
    thread and the threads it started that have no name of their own (ONNX Runtime's)."""

    POLL_S = 0.1

    def __init__(self, pid: int) -> None:
        self._proc = Path(f"/proc/{pid}")
        self._last: dict[str, tuple[str, float]] = {}
        self._at_start: dict[str, float] | None = None  # by thread id, when sources started
        self._ended = threading.Event()
        self._reader = threading.Thread(target=self._read_until_ended, daemon=True)
        self._reader.start()

    def _read_until_ended(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        try:
            process_name = (self._proc / "comm").read_text().strip()
        except OSError:
            return  # not Linux, or the process is gone
        while not self._ended.wait(self.POLL_S):
            try:
                tids = os.listdir(self._proc / "task")
            except OSError:
                return
            for tid in tids:
                try:
                    name = (self._proc / "task" / tid / "comm").read_text().strip()
                    stat = (self._proc / "task" / tid / "stat").read_text()
                except OSError:
                    continue  # the thread ended meanwhile
                # utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the name.
                fields = stat.rsplit(")", 1)[1].split()
                name = "main" if name == process_name else name
                self._last[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
            if self._at_start is None and any(n.startswith("src.") for n, _ in self._last.values()):
                self._at_start = {tid: cpu for tid, (_, cpu) in self._last.items()}

    def stop(self) -> dict[str, float]:
        """CPU seconds by thread name since the sources started, largest first."""
        self._ended.set()
        self._reader.join()
        at_start = self._at_start or {}
        by_name: dict[str, float] = {}
        for tid, (name, seconds) in self._last.items():
            kind = re.sub(r"\d+$", "*", name)
            by_name[kind] = by_name.get(kind, 0.0) + seconds - at_start.get(tid, 0.0)
        return dict(sorted(by_name.items(), key=lambda item: -item[1]))


def run_pipeline(pipeline: Path, redis_url: str, *args: str) -> dict[str, Any]:
    """`streamer run` in a child process: its stats, CPU use (by thread too) and peak memory."""
    stats_file = pipeline.with_suffix(".stats.json")
    log_file = pipeline.with_suffix(".log")
    command = [sys.executable, "-m", "streamer", "run", str(pipeline), "--redis-url", redis_url,
               "--stats-json", str(stats_file), *args]  # fmt: skip
    started = time.perf_counter()
    with log_file.open("wb") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        threads = ThreadCpu(child.pid)
        # wait4 gives this child's own CPU time and peak memory, not all children's so far.
        _, status, usage = os.wait4(child.pid, 0)
        thread_cpu_s = threads.stop()
        child.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"streamer run exited {child.returncode}:\n{log_file.read_text()}")
    stats: dict[str, Any] = json.loads(stats_file.read_text())
    stats["cpu_cores"] = round((usage.ru_utime + usage.ru_stime) / wall_s, 2)
    stats["peak_rss_mib"] = round(usage.ru_maxrss / 1024)
    processed = stats["frames"]["processed"]
    if processed and stats["fps"]:
        # Busy: a thread's CPU time over the time frames were processed; one near 1
        # is the one that limits.
        processing_s = processed / stats["fps"]
        stats["threads"] = {
            name: {"cpu_ms_per_frame": round(1000 * cpu / processed, 2),
                   "busy": round(cpu / processing_s, 2)}
            for name, cpu in thread_cpu_s.items()
        }  # fmt: skip
    return stats


def streamer_offline(clip: Path, model: str, server: RedisServer, work: Path) -> dict[str, Any]:
    pipeline = work / "offline.yaml"
    pipeline.write_text(
        f"name: offline\nsources:\n  - {{id: clip, uri: '{clip}'}}\n{model}"
        "events: {emit: [detections]}\n"
    )
    stats = run_pipeline(pipeline, server.url)
    return {
        "fps": stats["fps"],
        "frames": stats["frames"]["processed"],
        "cpu_cores": stats["cpu_cores"],
        "peak_rss_mib": stats["peak_rss_mib"],
        "providers": stats["providers"],
        "threads": stats.get("threads", {}),
    }


def live_sources_sustained(
    clip: Path,
    model_for: Callable[[int], str],
    server: RedisServer,
    work: Path,
    most: int,
    seconds: float,
) -> list[dict[str, Any]]:
    """Runs of 1, 2, ... paced copies of the clip until one drops frames (or `most`)."""
    trials = []
    for n in range(1, most + 1):
        sources = "".join(f"  - {{id: cam{i}, uri: '{clip}'}}\n" for i in range(n))
        pipeline = work / f"live{n}.yaml"
        pipeline.write_text(
            f"name: live{n}\nsources:\n{sources}{model_for(n)}events: {{emit: [detections]}}\n"
        )
        stats = run_pipeline(pipeline, server.url, "--realtime", "--duration", str(seconds))
        dropped = sum(stats["frames"]["dropped"].values())
        trials.append({"sources": n, "fps": stats["fps"], "dropped": dropped,
                       "dropped_where": stats["frames"]["dropped"],
                       "p99_ms": stats["latency_ms"]["p99"]})  # fmt: skip
        if dropped:
            break
    return trials


def live_overload(clip: Path, model: str, limit_fps: float, seconds: float) -> dict[str, Any]:
    """(d): one live RTSP camera at twice the inference-alone rate, 500 ms budget."""
    reason = rtsp_server_available()
    if reason is not None:
        return {"skipped": reason}
    stream_fps = max(1, round(2 * limit_fps))
    with RtspServer({"cam1": clip}, fps=stream_fps) as camera:
        run = overload.run_streamer(camera.url("cam1"), model, seconds, budget_ms=500)
    run.pop("windows")
    return {"stream_fps": stream_fps, **run}


def ultralytics_peer(python: str, model_path: Path, clip: Path) -> dict[str, Any]:
    """Ultralytics' predictor on the same ONNX file and clip, when `python` has it."""
    found = subprocess.run([python, "-c", "import ultralytics"], capture_output=True)
    if found.returncode != 0:
        return {"skipped": f"{python} has no ultralytics (benchmarks/requirements-peers.txt)"}
    peer = subprocess.run(
        [python, str(Path(__file__).with_name("peer_ultralytics.py")), str(model_path), str(clip)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(peer.stdout.strip().splitlines()[-1])
    return result


def decoded_frames(clip: Path) -> Iterator[av.VideoFrame]:
    """The clip's frames, decoded as streamer decodes files."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


def cpu_per_frame(clip: Path, model: Model, batch: int) -> dict[str, float]:
    """CPU milliseconds per frame of each step of the pipeline, one step after the other in
    this process: decoding as streamer decodes files, preparing the model input, inference
    at the batch size, output decoding and NMS. With them, the physical limit of the
    whole pipeline on these cores, as a fraction of inference alone. Frames and tensors
    are let go as the pipeline lets them go (a few are kept for inference): holding all
    of them would add the cost of fresh memory to every step."""
    started = time.process_time()
    frames = sum(1 for _ in decoded_frames(clip))
    decode_s = time.process_time() - started
    kept: list[np.ndarray] = []
    hw = model.input_hw_for((SIZE[1], SIZE[0]))
    reformatter, started = VideoReformatter(), time.process_time()
    for i, decoded in enumerate(decoded_frames(clip)):
        tensor = tensor_of(Frame("cpu", i, None, 0, 0.0, None, decoded, 0.0), model.spec, hw,
                           reformatter)  # fmt: skip
        if len(kept) < 4 * batch:
            kept.append(tensor)
    prepare_s = time.process_time() - started - decode_s  # the second decoding taken off
    batches = [np.stack(kept[i : i + batch]) for i in range(0, len(kept), batch)]
    model.run(batches[0])
    calls = frames // batch
    started = time.process_time()
    outputs = [output for i in range(calls) for output in model.run(batches[i % len(batches)])]
    infer_s = time.process_time() - started
    started = time.process_time()
    for output in outputs:
        xyxy, scores, classes = model.candidates(output, hw, 0.25)
        nms(xyxy, scores, classes, 0.45, 300)
    post_s = time.process_time() - started
    ms = {
        "decode": 1000 * decode_s / frames,
        "prepare": 1000 * prepare_s / frames,
        "inference": 1000 * infer_s / len(outputs),
        "output_and_nms": 1000 * post_s / len(outputs),
    }
    ms = {k: round(v, 2) for k, v in ms.items()}
    ms["limit_over_inference_alone"] = round(ms["inference"] / sum(ms.values()), 3)
    return ms


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


def int8_runs(
    model_path: Path, clip: Path, server: RedisServer, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The model quantized on the clip (`streamer quantize`), then measured beside the float
    model: inference alone of both, alternately, and (e) with the int8 model."""
    int8_path = work / f"{model_path.stem}.int8.onnx"
    report = quantize_and_check(model_path, int8_path, [clip])
    float_model = Model.load(model_path, providers=("cpu",))
    int8_model = Model.load(int8_path, providers=("cpu",))
    input_hw = float_model.input_hw_for((SIZE[1], SIZE[0]))
    float_fps, int8_fps = [], []
    for _ in range(2):  # alternated, so a drift of the machine's speed weighs on both
        float_fps.append(plain.inference_alone(float_model, args.batch, input_hw, seconds=4))
        int8_fps.append(plain.inference_alone(int8_model, args.batch, input_hw, seconds=4))
    int8_for = functools.partial(overload.model_yaml, int8_path)
    live = live_sources_sustained(
        clip, lambda n: int8_for(max(args.batch, n)), server, work, args.most_sources,
        args.live_seconds,
    )  # fmt: skip
    return {
        "model": int8_path.name,
        "inference_alone_fps": round(sum(int8_fps) / 2, 2),
        "float_inference_alone_fps": round(sum(float_fps) / 2, 2),
        "speedup": round(sum(int8_fps) / sum(float_fps), 3),
        "agreement": report.as_dict()["agreement"],
        "live_trials": live,
        "live_sources_sustained": max((t["sources"] for t in live if not t["dropped"]), default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=300, help="of the clip, made 720p")
    parser.add_argument("--rounds", type=int, default=3, help="of (a), (b), (c), the peer")
    parser.add_argument("--batch", type=int, default=4, help="as a pipeline's default")
    parser.add_argument("--providers", default="cpu", help="e.g. tensorrt,cuda,cpu")
    parser.add_argument("--fp16", action="store_true", help="TensorRT in half precision")
    parser.add_argument("--most-sources", type=int, default=8, help="for (e)")
    parser.add_argument("--live-seconds", type=float, default=15, help="each (e) trial")
    parser.add_argument("--overload-seconds", type=float, default=30, help="(d)")
    parser.add_argument("--int8", action="store_true", help="also quantize and measure int8")
    parser.add_argument("--int8-check", type=Path, action="append", default=[], metavar="MODEL",
                        help="also quantize MODEL on --clip and report its speed-up and "
                        "agreement (a model with trained weights, e.g. YOLOX-nano)")  # fmt: skip
    parser.add_argument("--ultralytics-python", default=sys.executable,
                        help="a Python with ultralytics installed, for the peer run")  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    clip = clip_720p(args.clip, args.work_dir, args.frames)
    model_path = args.model.resolve()
    providers = tuple(args.providers.split(","))
    gpu_lines = f"  providers: [{', '.join(providers)}]\n" + ("  fp16: true\n" if args.fp16 else "")
    model_for = functools.partial(overload.model_yaml, model_path, extra=gpu_lines)
    model = Model.load(model_path, providers=providers, fp16=args.fp16)  # as pipelines run it
    # One session, as a hand-written loop (and inference timed by hand) runs the model.
    single = Model.load(model_path, providers=providers, fp16=args.fp16, workers=1)
    input_hw = model.input_hw_for((SIZE[1], SIZE[0]))
    results: dict[str, Any] = {
        "clip": f"{clip.name} ({SIZE[0]}x{SIZE[1]})",
        "clip_given": args.clip.name,
        "model": model_path.name,
        "input_hw": list(input_hw),
        "batch": args.batch,
        "providers": model.providers,
        "workers": model.workers,
    }
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        work = Path(tmp)
        # Rounds of (b), (c) and the peer, each bracketed by (a) before and after: this
        # machine's speed drifts, so every ratio is taken within its round and the
        # median over rounds is reported.
        limits = [plain.inference_alone(model, args.batch, input_hw, seconds=6)]
        rounds = []
        for _ in range(args.rounds):
            offline = streamer_offline(clip, model_for(args.batch), server, work)
            loop = plain_loop(clip, single, 0.25)
            peer = ultralytics_peer(args.ultralytics_python, model_path, clip)
            one_session = plain.inference_alone(single, args.batch, input_hw, seconds=6)
            limits.append(plain.inference_alone(model, args.batch, input_hw, seconds=6))
            rounds.append(one_round(limits[-2:], offline, loop, peer, one_session))
        limit = statistics.median(limits)
        costs = cpu_per_frame(clip, model, args.batch)
        overloaded = live_overload(clip, model_for(1), limit, args.overload_seconds)
        # Frames of all live sources may share a batch.
        live = live_sources_sustained(
            clip, lambda n: model_for(max(args.batch, n)), server, work, args.most_sources,
            args.live_seconds,
        )  # fmt: skip
        int8 = None
        if args.int8:
            int8 = int8_runs(model_path, clip, server, work, args)
        int8_checks = [
            quantize_and_check(m.resolve(), work / f"{m.stem}.int8.onnx", [args.clip]).as_dict()
            for m in args.int8_check
        ]
    results |= {
        "rounds": rounds,
        "cpu_ms_per_frame": costs,
        **{key: median_of(rounds, key) for key in RATIOS},
        "live_overload": overloaded,
        "live_trials": live,
        "live_sources_sustained": max((t["sources"] for t in live if not t["dropped"]), default=0),
        "int8": int8,
        "int8_checks": int8_checks,
    }
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


RATIOS = ("streamer_over_inference_alone", "streamer_over_plain_loop", "streamer_over_ultralytics")


def one_round(
    limits: list[float],
    offline: dict[str, Any],
    loop: dict[str, Any],
    peer: dict[str, Any],
    one_session: float,
) -> dict[str, Any]:
    limit = sum(limits) / len(limits)
    return {
        "inference_alone_fps": round(limit, 2),
        "inference_alone_before_after": [round(x, 2) for x in limits],
        "inference_alone_one_session_fps": round(one_session, 2),
        "streamer_offline": offline,
        "plain_loop": loop,
        "ultralytics": peer,
        "streamer_over_inference_alone": round(offline["fps"] / limit, 3),
        "streamer_over_plain_loop": round(offline["fps"] / loop["fps"], 3),
        "streamer_over_ultralytics": round(offline["fps"] / peer["fps"], 3)
        if "fps" in peer
        else None,
    }


def median_of(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r[key] is not None]
    return round(statistics.median(values), 3) if values else None


def report(r: dict[str, Any]) -> None:
    hw = r["input_hw"]
    print(f"{r['model']} on {r['clip']}, input {hw[0]}x{hw[1]}, batch {r['batch']}, "
          f"{r['providers'][0]}\n")  # fmt: skip
    print(f"{'round':<6}{'(a) alone':>10}{'(b) streamer':>13}{'(c) plain':>10}"
          f"{'Ultralytics':>12}{'(b)/(a)':>9}{'(b)/(c)':>9}{'(b)/Ultr.':>10}")  # fmt: skip
    for i, rnd in enumerate(r["rounds"], 1):
        peer = rnd["ultralytics"].get("fps", "-")
        print(f"{i:<6}{rnd['inference_alone_fps']:>10.2f}{rnd['streamer_offline']['fps']:>13.2f}"
              f"{rnd['plain_loop']['fps']:>10.2f}{peer:>12}"
              f"{rnd['streamer_over_inference_alone']:>9.3f}{rnd['streamer_over_plain_loop']:>9.3f}"
              f"{rnd['streamer_over_ultralytics'] or '-':>10}")  # fmt: skip
    print(
        f"{'median':<51}{r['streamer_over_inference_alone']:>9.3f}"
        f"{r['streamer_over_plain_loop']:>9.3f}{r['streamer_over_ultralytics'] or '-':>10}"
    )
    print(f"{'targets':<51}{'>= 0.92':>9}{'>= 1.10':>9}{'>= 1.05':>10}")
    one = statistics.median(rnd["inference_alone_one_session_fps"] for rnd in r["rounds"])
    print(f"(a) runs {r['workers']} batch(es) at once, one session each, as pipelines run "
          f"the model; one session alone, as the plain loop runs it: {one:.2f} fps "
          "(median)")  # fmt: skip
    c = r["cpu_ms_per_frame"]
    steps = {k: v for k, v in c.items() if k not in ("inference", "limit_over_inference_alone")}
    worst = max(steps, key=steps.__getitem__)
    print(f"CPU per frame: inference {c['inference']} ms, "
          + ", ".join(f"{k.replace('_', ' ')} {v} ms" for k, v in steps.items())
          + f": on these cores the pipeline can reach at most {c['limit_over_inference_alone']}"
          f" of inference alone; the largest cost beside inference: {worst}")  # fmt: skip
    last = r["rounds"][-1]
    for name, key in (("(b) streamer", "streamer_offline"), ("(c) plain loop", "plain_loop"),
                      ("Ultralytics", "ultralytics")):  # fmt: skip
        row = last[key]
        if "fps" in row:
            print(f"{name}: {row['cpu_cores']} CPU cores busy, peak {row['peak_rss_mib']} MiB")
            if row.get("threads"):
                busiest = list(row["threads"].items())[:6]
                print("  its threads, CPU ms a frame (busy): " + ", ".join(
                    f"{thread} {t['cpu_ms_per_frame']} ({t['busy']:.0%})"
                    for thread, t in busiest))  # fmt: skip
        else:
            print(f"{name}: skipped: {row['skipped']}")
    d = r["live_overload"]
    if "skipped" in d:
        print(f"(d) skipped: {d['skipped']}")
    else:
        print(f"(d) live camera at {d['stream_fps']} fps (2x the limit): {d['fps']} fps processed, "
              f"{d['dropped']} dropped and counted, latency p50 {d['latency_ms']['p50']} ms, "
              f"p99 {d['latency_ms']['p99']} ms (budget 500 ms)")  # fmt: skip
    for t in r["live_trials"]:
        print(f"(e) {t['sources']} live {LIVE_FPS} fps source(s): {t['fps']} fps processed, "
              f"{t['dropped']} dropped, p99 {t['p99_ms']} ms")  # fmt: skip
    print(f"(e) sustained with no drop: {r['live_sources_sustained']} source(s) of {LIVE_FPS} fps")
    q = r["int8"]
    if q:
        a = q["agreement"]
        print(f"\nint8 ({q['model']}): inference alone {q['inference_alone_fps']} fps vs float "
              f"{q['float_inference_alone_fps']}: {q['speedup']}x (target >= 1.5); "
              f"{a['matched']} of {a['float_boxes']} float detections matched at IoU >= 0.5 "
              f"({a['matched_fraction']:.1%}, target >= 95 %)")  # fmt: skip
        for t in q["live_trials"]:
            print(f"(e) int8, {t['sources']} source(s): {t['fps']} fps processed, "
                  f"{t['dropped']} dropped, p99 {t['p99_ms']} ms")  # fmt: skip
        print(f"(e) int8 sustained with no drop: {q['live_sources_sustained']} source(s)")
    for check in r["int8_checks"]:
        a = check["agreement"]
        print(f"int8 check, {Path(check['model']).name} on {r['clip_given']}: "
              f"{check['float_ms']} -> {check['int8_ms']} ms a frame, {check['speedup']}x "
              f"(target >= 1.5); {a['matched']} of {a['float_boxes']} float detections "
              f"matched ({a['matched_fraction']:.1%}, target >= 95 %), "
              f"mean IoU {a['mean_iou']}")  # fmt: skip


if __name__ == "__main__":
    main()
