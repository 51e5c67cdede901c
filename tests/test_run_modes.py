"""`streamer run` in its modes: several sources and batching, realtime pacing, stop by signal,
damaged files."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import redis
from av.video.frame import PictureType

from streamer.runtime.clock import FakeClock
from streamer.sources.timing import Pacer
from tests.conftest import (
    DEMO_CONFIDENCE,
    DEMO_FPS,
    DEMO_FRAMES,
    one_source_pipeline,
    read_events,
    run_cli,
    run_with_stats,
    write_pipeline,
)
from tests.test_decode_fuzz import GOP, encode_segment
from tools.local_redis import RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# The demo clip: 300 frames at 15 fps, keyframes at 0 and 250 only, with B-frames.


def two_cameras(tmp_path: Path, clip: Path, model: Path, extra: str = "") -> Path:
    return write_pipeline(
        tmp_path / "two.yaml",
        f"name: two\nsources:\n  - {{id: a, uri: '{clip}'}}\n  - {{id: b, uri: '{clip}'}}\n"
        f"model:\n  path: '{model}'\n  batch: {{max_size: 4, max_wait_ms: 50}}\n"
        f"{DEMO_CONFIDENCE}{extra}"
        "events: {emit: [detections]}\n",
    )


def test_two_sources_batched_through_a_dynamic_model(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    pipeline = two_cameras(
        tmp_path, demo_clip, demo_model, "sink:\n  redis: {stream: 'cams:{source}'}\n"
    )
    result, stats = run_with_stats(pipeline, redis_server.url, "--max-frames", "12")
    assert result.returncode == 0, result.stderr
    assert stats["frames"] == {
        "decoded": 24, "processed": 24, "still": 0, "late": 0, "dropped": {},
    }  # fmt: skip
    for source in ("a", "b"):
        events = read_events(redis_client, f"cams:{source}")
        assert {e["source"] for e in events} == {source}
        assert [e["seq"] for e in events] == list(range(1, 15))
        assert [e["frame"]["index"] for e in events[1:-1]] == list(range(12))
        assert events[-1]["status"] == "ended"


def test_realtime_paces_a_file_like_a_camera(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    pipeline = one_source_pipeline(
        tmp_path,
        "rt",
        demo_clip,
        demo_model,
        extra=DEMO_CONFIDENCE + "realtime: {max_latency_ms: 2000}\n",
    )
    started = time.monotonic()
    result, stats = run_with_stats(pipeline, redis_server.url, "--realtime", "--max-frames", "30")
    assert result.returncode == 0, result.stderr
    assert (
        time.monotonic() - started >= 29 / DEMO_FPS
    )  # the 30th frame of a 15 fps clip is at 1.93 s
    events = [
        e for e in read_events(redis_client, "streamer:rt:events") if e["type"] == "detections"
    ]
    captured = [e["frame"]["captured_at"] for e in events]
    steps = [b - a for a, b in itertools.pairwise(captured)]
    assert steps and all(0.8 / DEMO_FPS <= s <= 1.2 / DEMO_FPS for s in steps), steps
    assert stats["frames"]["processed"] + sum(stats["frames"]["dropped"].values()) == 30


def test_a_file_whose_timestamps_are_all_equal_is_paced_at_its_frame_rate(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    """An encoder fed frames in another time base writes pts 0 for every frame, and the
    container's average rate comes out absurd: pacing falls back to the guessed rate."""
    clip = tmp_path / "flat.mp4"
    with av.open(str(demo_clip)) as src, av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=DEMO_FPS)
        stream.width, stream.height, stream.pix_fmt = 384, 216, "yuv420p"
        for frame in itertools.islice(src.decode(video=0), 12):
            small = frame.reformat(width=384, height=216, format="yuv420p")
            small.pts = 0  # in the source's time base: every frame lands on 0
            out.mux(stream.encode(small))
        out.mux(stream.encode(None))
    pipeline = one_source_pipeline(
        tmp_path,
        "flat",
        clip,
        demo_model,
        extra=DEMO_CONFIDENCE + "realtime: {max_latency_ms: 2000}\n",
    )
    result, _stats = run_with_stats(pipeline, redis_server.url, "--realtime")
    assert result.returncode == 0, result.stderr
    captured = [e["frame"]["captured_at"] for e in read_events(redis_client, "streamer:flat:events")
                if e["type"] == "detections"]  # fmt: skip
    steps = [b - a for a, b in itertools.pairwise(captured)]
    assert steps and all(0.8 / DEMO_FPS <= s <= 1.2 / DEMO_FPS for s in steps), steps


def test_duration_stops_a_live_run_cleanly(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    pipeline = one_source_pipeline(
        tmp_path,
        "live",
        demo_clip,
        demo_model,
        source_extra=", realtime: true",
        extra=DEMO_CONFIDENCE,
    )
    result = run_cli("run", str(pipeline), "--redis-url", redis_server.url, "--duration", "2")
    assert result.returncode == 0, result.stderr
    events = read_events(redis_client, "streamer:live:events")
    assert 5 <= len(events) <= 2 * 2 * DEMO_FPS  # about 2 s of the clip, not its 20 s
    assert (events[-1]["status"], events[-1]["detail"]) == ("ended", "stopped")


def test_sigterm_stops_drains_and_loses_nothing(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    pipeline = one_source_pipeline(
        tmp_path,
        "live",
        demo_clip,
        demo_model,
        source_extra=", realtime: true",
        extra=DEMO_CONFIDENCE,
    )
    stats_file = tmp_path / "stats.json"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer",
            "run",
            str(pipeline),
            "--redis-url",
            redis_server.url,
            "--stats-json",
            str(stats_file),
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while redis_client.xlen("streamer:live:events") < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert redis_client.xlen("streamer:live:events") >= 5
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            metrics = reply.read().decode()
        assert 'streamer_source_frames_decoded_total{source="cam1"}' in metrics
        assert 'streamer_events_total{outcome="delivered"}' in metrics
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    stats = json.loads(stats_file.read_text())
    events = read_events(redis_client, "streamer:live:events")
    assert stats["events"] == {"emitted": len(events), "delivered": len(events), "lost": 0}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert (events[-1]["status"], events[-1]["detail"]) == ("ended", "stopped")


def test_a_file_damaged_in_the_middle_is_decoded_as_far_as_possible(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    data = bytearray(demo_clip.read_bytes())
    for i in range(len(data) // 3, 2 * len(data) // 3, 4099):
        data[i] ^= 0xFF
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(data)
    stats = run_to_stats(tmp_path, redis_server, damaged, demo_model)
    frames = stats["frames"]
    assert frames["dropped"].get("decode:decode_error", 0) > 0
    # Damaged frames are dropped and counted; packets that give no frame at all are counted
    # too, without being among the decoded frames.
    assert frames["processed"] + frames["dropped"]["decode:decode_error"] >= frames["decoded"]
    assert frames["processed"] > DEMO_FRAMES * 2 / 3


def test_a_file_that_does_not_start_on_a_keyframe(tmp_path, redis_server, demo_clip, demo_model):
    # The demo clip's first GOP is 250 frames long: 90 of its frames with a keyframe a second
    # (every GOP frames), so that what is lost can be told from the rest.
    segment = tmp_path / "segment.mp4"
    encode_segment(demo_clip, segment, "mp4", range(0, 90), (640, 360))
    clip = tmp_path / "midgop.mp4"
    skipped = remux_from_packet(segment, clip, first_packet=4)
    with av.open(str(clip)) as copy:
        assert not next(p for p in copy.demux(video=0) if p.dts is not None).is_keyframe
    stats = run_to_stats(tmp_path, redis_server, clip, demo_model)
    frames = stats["frames"]
    # At most the rest of the first GOP is lost; the other GOPs are whole.
    assert 90 - GOP <= frames["processed"] <= 90 - skipped, frames
    assert frames["processed"] + sum(frames["dropped"].values()) >= frames["decoded"]


def run_to_stats(tmp_path: Path, redis_server, clip: Path, model: Path, *args: str) -> dict:
    pipeline = one_source_pipeline(tmp_path, "p", clip, model, extra=DEMO_CONFIDENCE)
    result, stats = run_with_stats(pipeline, redis_server.url, *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return stats


def remux_from_packet(src: Path, dst: Path, first_packet: int, movflags: str = "") -> int:
    """Copy `src` without its first packets, so that the copy starts inside a GOP."""
    options = {"movflags": movflags} if movflags else {}
    with av.open(str(src)) as inp, av.open(str(dst), "w", options=options) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for i, packet in enumerate(inp.demux(in_stream)):
            if packet.dts is None or i < first_packet:
                continue
            packet.stream = out_stream
            out.mux(packet)
    return first_packet


def test_the_pacer_never_goes_backwards():
    pacer = Pacer(fallback_step_s=0.1, clock=FakeClock())
    stamps = [pacer.stamp_ns(pts) for pts in [0.0, 0.1, 0.2, 0.05, 0.3, None, 500.0, 500.1]]
    steps = [(b - a) / 1e9 for a, b in itertools.pairwise(stamps)]
    # backwards (0.05), missing (None) and a jump (500) each advance by one frame
    assert steps == pytest.approx([0.1, 0.1, 0.1, 0.25, 0.1, 0.1, 0.1], abs=1e-6)


def transcode(src: Path, dst: Path, codec: str, frames: range, with_audio: bool) -> None:
    """Re-encode `frames` of `src` with `codec` at its size and rate, optionally muxing a
    silent AAC track too."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        template = inp.streams.video[0]
        video = out.add_stream(codec, rate=template.average_rate)
        video.width, video.height, video.pix_fmt = template.width, template.height, "yuv420p"
        audio = out.add_stream("aac", rate=48000) if with_audio else None
        samples = np.zeros((1, 4800), np.float32)
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= frames.stop:
                break
            if i < frames.start:
                continue
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"))))
            if audio is not None:
                chunk = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
                chunk.sample_rate = 48000
                out.mux(audio.encode(chunk))
        out.mux(video.encode())
        if audio is not None:
            out.mux(audio.encode())


def test_h265_in_mkv_with_audio_and_mpeg4_in_avi(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    # Frames where three people walk through the demo clip.
    hevc = tmp_path / "hevc.mkv"
    avi = tmp_path / "mpeg4.avi"
    transcode(demo_clip, hevc, "libx265", range(100, 130), with_audio=True)
    transcode(demo_clip, avi, "mpeg4", range(100, 130), with_audio=False)
    pipeline = write_pipeline(
        tmp_path / "formats.yaml",
        f"name: formats\nsources:\n  - {{id: hevc, uri: '{hevc}'}}\n  - {{id: avi, uri: '{avi}'}}\n"
        f"model:\n  path: '{demo_model}'\n{DEMO_CONFIDENCE}  classes: [person]\n"
        "events: {emit: [detections]}\n",
    )
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert result.returncode == 0, result.stderr
    for source in ("hevc", "avi"):
        got = stats["sources"][source]
        assert (got["reconnects"], got["frames"], got["processed"]) == (0, 30, 30)
        assert got["state"] == "ended" and got["detail"] == "eof"
    assert list(stats["sources"]) == ["hevc", "avi"]
    assert stats["frames"]["processed"] == 60
    events = read_events(redis_client, "streamer:formats:events")
    for source in ("hevc", "avi"):
        frames = [e for e in events if e["source"] == source and e["type"] == "detections"]
        with_person = [e for e in frames if any(o["label"] == "person" for o in e["objects"])]
        assert len(with_person) >= 27, (source, len(with_person))


def test_max_fps_keeps_evenly_spaced_frames_and_counts_the_rest(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    pipeline = one_source_pipeline(
        tmp_path, "cap", demo_clip, demo_model, ", max_fps: 5", DEMO_CONFIDENCE
    )
    result, stats = run_with_stats(pipeline, redis_server.url, "--max-frames", "40")
    assert result.returncode == 0, result.stderr
    # 5 of the clip's 15 frames a second: every third frame.
    assert stats["frames"] == {
        "decoded": 40, "processed": 14, "still": 0, "late": 0,
        "dropped": {"decode:max_fps": 26},
    }  # fmt: skip
    events = read_events(redis_client, "streamer:cap:events")
    indices = [e["frame"]["index"] for e in events if e["type"] == "detections"]
    assert indices == list(range(0, 40, 3))


def test_skipping_non_reference_frames_decodes_fewer_frames(
    tmp_path, redis_server, demo_clip, demo_model
):
    pipeline = one_source_pipeline(tmp_path, "skip", demo_clip, demo_model,
                                   ", skip_frames: nonref", DEMO_CONFIDENCE)  # fmt: skip
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert result.returncode == 0, result.stderr
    with av.open(str(demo_clip)) as clip:
        types = Counter(PictureType(frame.pict_type).name for frame in clip.decode(video=0))
    assert sum(types.values()) == DEMO_FRAMES
    # The clip has B-frames: its I- and P-frames are all decoded, and most of its B-frames
    # are not (x264 keeps some as references for others, and those are decoded).
    i_and_p = types["I"] + types["P"]
    assert i_and_p <= stats["frames"]["decoded"] <= i_and_p + types["B"] / 2, (types, stats)
    assert stats["frames"]["processed"] == stats["frames"]["decoded"]


def test_a_halt_with_redis_frozen_counts_every_event_and_frame(tmp_path, demo_clip, demo_model):
    pipeline = one_source_pipeline(tmp_path, "frozen", demo_clip, demo_model, ", realtime: true",
                                   DEMO_CONFIDENCE)  # fmt: skip
    stats_file = tmp_path / "stats.json"
    with RedisServer(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", str(pipeline), "--redis-url", server.url,
             "--stats-json", str(stats_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while client.xlen("streamer:frozen:events") < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)  # Redis stops answering
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)  # drain: cannot finish while Redis is frozen
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)  # stop now
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.kill(server.pid, signal.SIGCONT)
            client.close()
    assert proc.returncode == 130, stderr
    stats = json.loads(stats_file.read_text())
    events, frames = stats["events"], stats["frames"]
    assert events["lost"] > 0
    assert events["emitted"] == events["delivered"] + events["lost"], events
    assert frames["decoded"] == frames["processed"] + sum(frames["dropped"].values()), frames


def test_a_file_that_ends_before_its_announced_frames_fails_its_run(
    tmp_path, redis_server, demo_clip, demo_model
):
    # As a recording copied or downloaded only in part: its index (moov) is at the front, as
    # in a file written for streaming, so what arrived can be read.
    remux_from_packet(demo_clip, tmp_path / "whole.mp4", first_packet=0, movflags="faststart")
    whole = (tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    pipeline = one_source_pipeline(tmp_path, "cut", cut, demo_model, extra=DEMO_CONFIDENCE)
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert result.returncode == 1, result.stderr
    assert f"{cut} ended after" in result.stderr
    assert f"of the {DEMO_FRAMES} frames it announces (truncated or damaged)" in result.stderr
    frames = stats["frames"]
    assert 0 < frames["decoded"] < DEMO_FRAMES
    assert frames["decoded"] + frames["dropped"]["decode:decode_error"] == DEMO_FRAMES
    assert stats["sources"]["cam1"]["detail"] == "failed"
    # The whole file, and any file cut by --max-frames, is no failure.
    whole_pipeline = one_source_pipeline(tmp_path, "whole", tmp_path / "whole.mp4", demo_model)
    for extra in ((), ("--max-frames", "20")):
        result, stats = run_with_stats(whole_pipeline, redis_server.url, *extra)
        assert result.returncode == 0, result.stderr
        assert "decode:decode_error" not in stats["frames"]["dropped"]
