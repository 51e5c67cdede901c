"""Soak: a live pipeline for minutes, its memory and threads sampled over time.

Two RTSP cameras (the project's GStreamer test server looping a clip) run through
`streamer run` with tracking, zone and line rules and per-frame events on; every
`--every` seconds the benchmark reads the process's resident memory and thread count
from /proc. It prints them over time and the growth of memory from the end of the first
minute to the end (target: under 5 %), and writes the samples with `--json FILE`.

    python -m benchmarks.soak --minutes 10 \\
        [--clip sample_videos/parking.mp4] [--model models/demo-detector.onnx]

It needs redis-server and GStreamer's RTSP server (scripts/setup.sh test installs both).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.local_redis import RedisServer
from tools.rtsp import RtspServer

ROOT = Path(__file__).resolve().parent.parent


def process_sample(pid: int) -> tuple[float, int]:
    """(resident memory in MiB, threads) of process `pid`."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def pipeline_text(urls: dict[str, str], model: Path) -> str:
    sources = "".join(f"  - {{id: {sid}, uri: '{url}'}}\n" for sid, url in urls.items())
    return (
        f"name: soak\nsources:\n{sources}model:\n  path: '{model}'\n"
        "events:\n  emit: [object_appeared, object_left, zone_entered, zone_exited,"
        " line_crossed, detections]\n"
        "zones:\n  - {name: left, polygon: [[0, 0], [320, 0], [320, 360], [0, 360]]}\n"
        "lines:\n  - {name: mid, points: [[320, 0], [320, 360]]}\n"
        "sink:\n  redis: {maxlen: 10000}\n"
    )


def soak(clip: Path, model: Path, minutes: float, every_s: float, fps: int) -> dict[str, Any]:
    seconds = minutes * 60
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as redis, \
            RtspServer({"cam1": clip, "cam2": clip}, fps=fps) as camera:  # fmt: skip
        pipeline = Path(tmp) / "soak.yaml"
        pipeline.write_text(pipeline_text({s: camera.url(s) for s in ("cam1", "cam2")}, model))
        stats_file = Path(tmp) / "stats.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", str(pipeline), "--redis-url", redis.url,
             "--duration", str(seconds), "--stats-json", str(stats_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started = time.monotonic()
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - started
                try:
                    rss_mib, threads = process_sample(proc.pid)
                except (FileNotFoundError, ProcessLookupError):
                    break  # it just ended
                samples.append({"t_s": round(elapsed, 1), "rss_mib": round(rss_mib, 1),
                                "threads": threads})  # fmt: skip
                print(f"{elapsed:>7.0f} s  rss {rss_mib:>7.1f} MiB  threads {threads}",
                      flush=True)  # fmt: skip
                time.sleep(every_s)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        stats = json.loads(stats_file.read_text())
    return {"samples": samples, "stats": stats, "returncode": proc.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--fps", type=int, default=10, help="each camera's frame rate")
    parser.add_argument("--clip", type=Path, default=ROOT / "sample_videos" / "parking.mp4")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo-detector.onnx")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = soak(args.clip.resolve(), args.model.resolve(), args.minutes, args.every, args.fps)
    samples = result["samples"]
    # Memory grows while the model and the queues fill: judge it from the first minute on
    # (from the first sixth of a shorter run).
    settled_s = min(60.0, args.minutes * 10)
    after_first_minute = [s for s in samples if s["t_s"] >= settled_s]
    first, last = after_first_minute[0], samples[-1]
    growth = (last["rss_mib"] - first["rss_mib"]) / first["rss_mib"] * 100
    threads = sorted({s["threads"] for s in after_first_minute})
    stats = result["stats"]
    result["rss_growth_pct"] = round(growth, 2)
    print(f"\nrss {first['rss_mib']} MiB at {first['t_s']:.0f} s, {last['rss_mib']} MiB at "
          f"{last['t_s']:.0f} s: {growth:+.2f} % (target < 5 %); threads after the first "
          f"minute: {threads}")  # fmt: skip
    print(f"frames processed {stats['frames']['processed']}, dropped "
          f"{sum(stats['frames']['dropped'].values())}, events delivered "
          f"{stats['events']['delivered']}, lost {stats['events']['lost']}, "
          f"objects {stats['objects']}, exit code {result['returncode']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
