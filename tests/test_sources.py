"""Sources that fail or cannot be reached: each ends or retries alone; the others go on."""

from __future__ import annotations

import functools
import http.server
import itertools
import threading
from pathlib import Path

import av
import pytest

from streamer.config.schema import ReconnectConfig, SourceConfig
from streamer.events.event import SourceState
from streamer.runtime.clock import FakeClock
from streamer.runtime.messages import DropReason, EndOfStream, SourceStatus
from streamer.runtime.queues import Overflow, StageQueue
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Supervisor
from streamer.sources.opening import open_options
from streamer.sources.timing import RateLimiter
from streamer.sources.video import SourcePlan, VideoSource
from tests.conftest import DEMO_CONFIDENCE, DEMO_FPS, read_events, run_with_stats, sources_pipeline
from tests.test_decode_fuzz import encode_segment
from tools.local_redis import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_a_source_that_fails_ends_itself_in_band(tmp_path: Path):
    plan = SourcePlan(SourceConfig(id="gone", uri=str(tmp_path / "deleted.mp4")), False, 500, None)
    out: StageQueue = StageQueue("decoded", 4, Overflow.BLOCK, lambda i, r: None)
    source = VideoSource(plan, out, RunStats(["gone"]), Supervisor())
    source.run()
    assert source.failed
    status, eos = out.get_nowait(), out.get_nowait()
    assert isinstance(status, SourceStatus) and (status.status, status.detail) == (
        "ended",
        "failed",
    )
    assert eos == EndOfStream("gone", "failed")


def test_an_unreachable_camera_is_retried_on_the_backoff_schedule_without_sleeping():
    """Connections refused at once; the waits between attempts pass on a fake clock."""
    reconnect = ReconnectConfig(initial_delay_s=0.5, max_delay_s=4.0, jitter=0.0)
    config = SourceConfig(id="door", uri=f"rtsp://127.0.0.1:{free_port()}/s", reconnect=reconnect)
    out: StageQueue = StageQueue("decoded", 4, Overflow.BLOCK, lambda i, r: None)
    supervisor, clock = Supervisor(), FakeClock()
    source = VideoSource(SourcePlan(config, True, 500, None), out, RunStats(["door"]), supervisor,
                         clock)  # fmt: skip
    retried_at: list[float] = []

    def watch() -> None:
        while len(retried_at) < 7:
            item = out.get(1.0)
            if isinstance(item, EndOfStream):
                return  # ended on its own: the assertion below says how far it got
            if isinstance(item, SourceStatus) and item.status is SourceState.RECONNECTING:
                retried_at.append(item.at)
        supervisor.stop_sources.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    started_at = clock.time()
    source.run()
    watcher.join(10)
    assert not watcher.is_alive()
    waits = [round(b - a, 3) for a, b in itertools.pairwise([started_at, *retried_at])]
    # Doubling from 0.5 s up to 4 s; each attempt itself takes no time on this clock.
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_an_unreachable_camera_is_retried_while_a_file_goes_on(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    camera = f"rtsp://viewer:s3cret@127.0.0.1:{free_port()}/stream1"
    uris = {"file": str(demo_clip), "door": camera}
    pipeline = sources_pipeline(tmp_path, "mixed", uris, demo_model, DEMO_CONFIDENCE)
    result, stats = run_with_stats(pipeline, redis_server.url, "--duration", "3")
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stderr
    assert "rtsp://viewer:***@127.0.0.1" in result.stderr
    assert stats["sources"]["door"]["frames"] == 0
    assert stats["sources"]["door"]["reconnects"] >= 2
    # Paced at its 15 fps beside a live source, for most of the run.
    assert stats["sources"]["file"]["frames"] >= 0.5 * DEMO_FPS * stats["wall_s"], stats
    events = read_events(redis_client, "streamer:mixed:events")
    door = [e.get("status") for e in events if e["source"] == "door"]
    assert door[:3] == ["disconnected", "reconnecting", "disconnected"]
    assert door[-1] == "ended"
    assert any(e["type"] == "detections" for e in events if e["source"] == "file")


def test_drop_reasons_are_named():
    assert {r.value for r in DropReason} == {
        "queue_full", "deadline", "decode_error", "shutdown", "max_fps"}  # fmt: skip


@pytest.mark.parametrize(
    ("fps_in", "max_fps", "kept_per_second"),
    [(30, 10, 10), (30, 12, 12), (25, 10, 10), (10, 30, 10), (30, 30, 30), (30, 1, 1)],
)
def test_the_rate_limit_keeps_evenly_spaced_frames(fps_in, max_fps, kept_per_second):
    limiter = RateLimiter(max_fps)
    times = [i / fps_in for i in range(fps_in * 10)]  # ten seconds
    kept = [t for t in times if limiter.keep(t)]
    assert len(kept) == pytest.approx(kept_per_second * 10, abs=1)
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    assert max(gaps) - min(gaps) <= 1 / fps_in + 1e-9  # never more than one frame uneven


def test_the_rate_limit_restarts_after_a_gap_or_a_jump_back():
    limiter = RateLimiter(5)
    times = (0.0, 0.1, 0.2, 10.0, 10.1, 10.2, 0.0, 0.1, 0.2)
    assert [limiter.keep(t) for t in times] == [
        True, False, True, True, False, True, True, False, True]  # fmt: skip


def test_open_options():
    rtsp = SourceConfig(id="a", uri="rtsp://cam/1", transport="udp",
                        ffmpeg_options={"probesize": 500000, "fflags": "nobuffer"})  # fmt: skip
    assert open_options(rtsp) == {"rtsp_transport": "udp", "analyzeduration": "0",
                                  "probesize": "500000", "fflags": "nobuffer"}  # fmt: skip
    assert open_options(SourceConfig(id="a", uri="https://cdn/live.m3u8")) == {}
    device = SourceConfig(id="a", uri="/dev/video0")
    assert (device.is_device, device.is_file) == (True, False)


def test_an_hls_stream_over_http_is_a_live_source(
    tmp_path, redis_client, redis_server, demo_clip, demo_model
):
    # The demo clip's keyframes are 250 frames apart; a copy of its first 100 frames with one
    # a second makes a playlist of several segments, as a live encoder's is.
    clip = tmp_path / "short-gop.mp4"
    encode_segment(demo_clip, clip, "mp4", range(0, 100), (640, 360))
    hls = tmp_path / "hls"
    hls.mkdir()
    with (
        av.open(str(clip)) as src,
        av.open(
            str(hls / "index.m3u8"),
            "w",
            format="hls",
            options={"hls_time": "2", "hls_list_size": "0"},
        ) as dst,
    ):
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    assert len(list(hls.glob("*.ts"))) >= 3
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(hls))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        server_thread = threading.Thread(target=web.serve_forever)
        server_thread.start()
        try:
            url = f"http://127.0.0.1:{web.server_address[1]}/index.m3u8"
            extra = DEMO_CONFIDENCE + "realtime: {max_latency_ms: 2000}\n"
            pipeline = sources_pipeline(tmp_path, "hls", {"cdn": url}, demo_model, extra)
            result, stats = run_with_stats(pipeline, redis_server.url, "--max-frames", "30")
        finally:
            web.shutdown()
            server_thread.join(timeout=5)
    assert result.returncode == 0, result.stderr
    assert stats["sources"]["cdn"]["frames"] == 30
    events = read_events(redis_client, "streamer:hls:events")
    assert events[0]["status"] == "connected"
    # A recorded playlist arrives faster than real time: as for any live source, what the
    # model cannot take in time is dropped, and counted.
    detections = sum(e["type"] == "detections" for e in events)
    assert detections >= 1
    assert detections + sum(stats["frames"]["dropped"].values()) == 30
