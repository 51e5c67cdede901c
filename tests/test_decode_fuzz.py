"""Damaged H.264 through the real decoder: flipped bytes, zeroed ranges, truncated and dropped
packets, garbage before or after the video, and files of pure garbage, in MP4, raw Annex-B and
MPEG-TS. Each gives frames (damage dropped and counted as decode:decode_error), or a source
that ends as failed with a line naming the file, or a refusal at start naming the file; never
a traceback, a hang or a crash.

Many variants run through `VideoSource` (the decoder thread of a pipeline) in one child
process, so that a crash in FFmpeg would fail the test instead of killing pytest; a few run
through `streamer run` with the demo model and Redis.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from streamer.config.schema import SourceConfig
from streamer.errors import SourceError
from streamer.models import ModelSpec
from streamer.runtime.messages import EndOfStream, Frame, SourceStatus
from streamer.runtime.queues import Overflow, StageQueue
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Supervisor
from streamer.sources.opening import probe_file
from streamer.sources.video import SourcePlan, VideoSource
from streamer.stages.preprocess import prepare
from tests.conftest import (
    DEMO_CONFIDENCE,
    DEMO_FPS,
    REPO,
    one_source_pipeline,
    read_events,
    run_with_stats,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SEGMENT_FRAMES = range(100, 160)  # three people and two or three cars in the demo clip
SEGMENT_SIZE = (384, 216)
GOP = 15  # a keyframe a second: decoding recovers soon after damage
TS_PACKET = 188
FILE_TIMEOUT_S = 20.0  # for one damaged file through the decoder thread
WORKER_TIMEOUT_S = 120.0
# A YOLOv8-style model input: every decoded frame, whatever its size, must fit one.
FUZZ_SPEC = ModelSpec("yolov8", "images", None, (160, 160), 160, 32, ("x",), True, 1 / 255, True)


def encode_segment(
    clip: Path,
    dst: Path,
    container: str,
    frames: range = SEGMENT_FRAMES,
    size: tuple[int, int] = SEGMENT_SIZE,
    first_pts: int = 0,
) -> None:
    """`frames` of `clip`, scaled to `size`, as H.264 with B-frames at 15 fps in `container`;
    the first frame's time is `first_pts` frames (fifteenths of a second)."""
    options = {"g": str(GOP), "keyint_min": str(GOP), "bf": "2", "preset": "ultrafast"}
    with av.open(str(clip)) as src, av.open(str(dst), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=DEMO_FPS, options=options)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i >= frames.stop:
                break
            if i >= frames.start:
                scaled = frame.reformat(*size, format="yuv420p")
                scaled.pts = first_pts + i - frames.start
                scaled.time_base = Fraction(1, DEMO_FPS)
                out.mux(stream.encode(scaled))
        out.mux(stream.encode(None))


def nal_units(data: bytes) -> list[bytes]:
    """An Annex-B stream cut before each 3-byte start code (a 4-byte one keeps its zero)."""
    starts = []
    at = data.find(b"\x00\x00\x01")
    while at != -1:
        starts.append(at)
        at = data.find(b"\x00\x00\x01", at + 3)
    bounds = [0, *starts[1:], len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(max(1, len(out) // 500)):
        out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
    return bytes(out)


def zero_ranges(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(3):
        length = rng.randrange(200, 2000)
        start = rng.randrange(len(out) - length)
        out[start : start + length] = bytes(length)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: int(len(data) * rng.uniform(0.1, 0.9))]


def drop_units(data: bytes, rng: random.Random, container: str) -> bytes:
    """Whole TS packets or NAL units lost, as on a lossy link."""
    if container == "mpegts":
        units = [data[i : i + TS_PACKET] for i in range(0, len(data), TS_PACKET)]
    else:
        units = nal_units(data)
    return b"".join(u for i, u in enumerate(units) if i < 3 or rng.random() > 0.1)


def cut_units(data: bytes, rng: random.Random) -> bytes:
    """NAL units cut short: the rest of a slice never arrived."""
    return b"".join(
        u[: rng.randrange(4, len(u))] if len(u) > 8 and rng.random() < 0.15 else u
        for u in nal_units(data)
    )


def remux_packets(src: Path, dst: Path, rng: random.Random, cut: bool) -> None:
    """MP4 with packets lost (`cut` False) or cut short (`cut` True): the container is sound,
    the coded data is not."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for i, packet in enumerate(inp.demux(inp.streams.video[0])):
            if packet.dts is None:
                continue
            damaged = i >= 1 and rng.random() < 0.15
            if damaged and not cut:
                continue
            if damaged:
                payload = bytes(packet)
                short = av.Packet(payload[: rng.randrange(1, max(2, len(payload)))])
                short.pts, short.dts, short.time_base = packet.pts, packet.dts, packet.time_base
                packet = short
            packet.stream = stream
            out.mux(packet)


def make_variants(segments: dict[str, Path], folder: Path) -> dict[str, Path]:
    """Damaged copies of each segment, the same bytes every run (seeded)."""
    variants: dict[str, Path] = {}

    def add(name: str, suffix: str, data: bytes) -> None:
        path = folder / f"{name}{suffix}"
        path.write_bytes(data)
        variants[name] = path

    for container, segment in segments.items():
        data = segment.read_bytes()
        suffix = segment.suffix
        damage: dict[str, Callable[[random.Random], bytes]] = {
            "flip": lambda rng, d=data: flip_bytes(d, rng),
            "zero": lambda rng, d=data: zero_ranges(d, rng),
            "truncate": lambda rng, d=data: truncate(d, rng),
            "garbage_after": lambda rng, d=data: d + rng.randbytes(20_000),
            "garbage_before": lambda rng, d=data: rng.randbytes(4_000) + d,
        }
        if container != "mp4":
            damage["drop"] = lambda rng, d=data, c=container: drop_units(d, rng, c)
            damage["cut"] = lambda rng, d=data: cut_units(d, rng)
        for kind, make in damage.items():
            for seed in range(3 if kind in ("flip", "zero", "truncate") else 2):
                add(f"{container}-{kind}-{seed}", suffix, make(random.Random(f"{kind}{seed}")))
        if container == "mp4":
            for seed in range(2):
                for cut in (False, True):
                    path = folder / f"mp4-{'cut' if cut else 'drop'}-{seed}.mp4"
                    remux_packets(segment, path, random.Random(seed), cut)
                    variants[path.stem] = path
        add(f"{container}-garbage", suffix, random.Random(container).randbytes(80_000))
    return variants


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def decode_one(path: Path) -> dict[str, Any]:
    """What the pipeline's decoder thread does with `path`: the start check, then every frame
    letterboxed as preprocessing would; the counts, and the lines logged."""
    try:
        probe_file(str(path))
    except SourceError as exc:
        return {"refused": str(exc)}
    plan = SourcePlan(SourceConfig(id="fuzz", uri=str(path)), False, 500, None)
    out: StageQueue[Frame] = StageQueue("decoded", 100_000, Overflow.BLOCK, lambda i, r: None)
    stats = RunStats(["fuzz"])
    supervisor = Supervisor()
    source = VideoSource(plan, out, stats, supervisor)
    handler = _Lines()
    logging.getLogger("streamer").addHandler(handler)
    thread = threading.Thread(target=source.run, name="fuzz-source", daemon=True)
    thread.start()
    thread.join(FILE_TIMEOUT_S)
    logging.getLogger("streamer").removeHandler(handler)
    if thread.is_alive():
        supervisor.halt.set()
        return {"hung": True}
    frames, sizes, last = 0, set(), None
    while (item := out.get_nowait()) is not None:
        last = item
        if isinstance(item, Frame):
            frames += 1
            sizes.add((item.width, item.height))
            # The model input, made as the pipeline makes it from a decoded frame.
            tensor = prepare(item, FUZZ_SPEC, (160, 160)).tensor
            assert tensor.shape == (3, 160, 160)
        else:
            assert isinstance(item, (SourceStatus, EndOfStream))
    snapshot = stats.snapshot()
    return {
        "failed": source.failed,
        "ended": isinstance(last, EndOfStream),
        "frames": frames,
        "decoded": snapshot["frames"]["decoded"],
        "decode_errors": snapshot["frames"]["dropped"].get("decode:decode_error", 0),
        "sizes": sorted(sizes),
        "logged": handler.lines,
    }


def worker(paths: list[str]) -> None:
    """Child process: one JSON line per file, as soon as it is done (a crash or hang shows
    which file caused it)."""
    for path in paths:
        try:
            report = decode_one(Path(path))
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            report = {"exception": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"path": path, **report}), flush=True)
        if report.get("hung"):
            sys.exit(3)  # the decoder thread cannot be stopped; the test reports the file


def decode_in_child(paths: list[Path]) -> dict[str, dict[str, Any]]:
    code = "import sys; from tests.test_decode_fuzz import worker; worker(sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        cwd=REPO,
        check=False,
    )
    reports = {}
    for line in proc.stdout.splitlines():
        report = json.loads(line)
        reports[report.pop("path")] = report
    assert proc.returncode == 0, (
        f"decoder child exited with {proc.returncode} after {len(reports)} of {len(paths)} "
        f"files (last: {list(reports)[-1:]}); stderr:\n{proc.stderr[-3000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return reports


@pytest.fixture(scope="module")
def segments(demo_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("segments")
    made = {}
    for container, suffix in (("mp4", ".mp4"), ("h264", ".h264"), ("mpegts", ".ts")):
        made[container] = folder / f"segment{suffix}"
        encode_segment(demo_clip, made[container], container)
    return made


@pytest.fixture(scope="module")
def variants(segments: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    return make_variants(segments, tmp_path_factory.mktemp("damaged"))


def test_damaged_h264_never_crashes_hangs_or_raises(segments, variants):
    files = {**{f"{c}-intact": p for c, p in segments.items()}, **variants}
    reports = decode_in_child(list(files.values()))
    by_name = {name: reports[str(path)] for name, path in files.items()}
    for name, report in by_name.items():
        path = str(files[name])
        assert "exception" not in report, (name, report)
        assert not report.get("hung"), name
        if "refused" in report:
            # `streamer run` and `validate` show this line and exit with 2.
            message = report["refused"]
            assert message.startswith(f"{path}: "), (name, message)
            assert len(message.splitlines()) == 1
            continue
        assert report["ended"], (name, report)  # the end of the stream was sent in band
        assert report["frames"] + report["decode_errors"] >= report["decoded"], (name, report)
        # A damaged parameter set can give frames of another size (16x16 was seen): each one
        # was letterboxed all the same.
        assert all(w > 0 and h > 0 for w, h in report["sizes"]), (name, report)
        if report["failed"]:
            # The pipeline exits with 1; the log names the file.
            assert any(path in line for line in report["logged"]), (name, report)
        assert all(len(line.splitlines()) == 1 for line in report["logged"]), (name, report)
    for container in ("mp4", "h264", "mpegts"):
        intact = by_name[f"{container}-intact"]
        assert (intact["frames"], intact["decode_errors"], intact["failed"]) == (60, 0, False)
    # Damage is seen and counted, and the frames around it still come through.
    flipped = [by_name[f"{c}-flip-{s}"] for c in ("mp4", "h264", "mpegts") for s in range(3)]
    assert sum(r.get("decode_errors", 0) for r in flipped) > 0, flipped
    # The rendered clip's keyframes hold most of its bytes, so most flips land in one and spoil
    # its GOP (4 to 18 of the 60 frames came through, varying with the threads the decoder
    # runs): frames between the damage still do.
    assert all(r["frames"] >= 2 for r in flipped if "frames" in r), flipped
    for name in ("h264-garbage_after-0", "mpegts-garbage_after-0", "mp4-garbage_after-0"):
        assert by_name[name]["frames"] >= 55, (name, by_name[name])


@pytest.mark.parametrize(
    "variant", ["mp4-flip-1", "mpegts-truncate-1", "h264-drop-0", "h264-cut-1", "mp4-garbage"]
)
def test_damaged_files_through_streamer_run(
    tmp_path, redis_client, redis_server, variants, demo_model, variant
):
    clip = variants[variant]
    pipeline = one_source_pipeline(tmp_path, "damaged", clip, demo_model, extra=DEMO_CONFIDENCE)
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("streamer: error:")]
    if result.returncode == 2:  # refused at start: one line naming the file
        assert len(errors) == 1 and f"{clip}: " in errors[0], result.stderr
        return
    assert result.returncode in (0, 1), result.stderr
    frames = stats["frames"]
    dropped = sum(frames["dropped"].values())
    assert frames["processed"] + dropped >= frames["decoded"], frames
    events = read_events(redis_client, "streamer:damaged:events")
    ended = events[-1]
    assert (ended["type"], ended["status"]) == ("source_status", "ended")
    if result.returncode == 1:  # the source failed mid-way: what it gave is delivered
        assert ended["detail"] == "failed"
        assert errors == ["streamer: error: source(s) failed: cam1"], result.stderr
        assert str(clip) in result.stderr
    else:
        assert ended["detail"] == "eof"
        assert frames["processed"] >= 1
