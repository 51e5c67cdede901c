"""The test RTSP server (tools/rtsp.py): real H.264 over RTSP from a looping file, as a camera."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from tools.rtsp import RtspServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CLIP_SIZE = (640, 360)  # the repository's clip
SHORT_FRAMES = 30  # 3 s at 10 fps
MARK_WIDTH = 20  # the frame number n is a white cell at x = n * MARK_WIDTH
MARK_HEIGHT = 32
FREEZE_READ_TIMEOUT_S = 2.0
OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32768"}


@pytest.fixture(scope="module")
def clip(demo_camera_clip: Path) -> Path:
    return demo_camera_clip


@pytest.fixture(scope="module")
def short_clip(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 30 frames (3 s at 10 fps) of the clip, each with its number marked on it."""
    out = tmp_path_factory.mktemp("rtsp") / "short.mp4"
    with av.open(str(clip)) as src, av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=10)
        stream.width, stream.height = CLIP_SIZE
        stream.pix_fmt = "yuv420p"
        for n, frame in enumerate(src.decode(video=0)):
            if n == SHORT_FRAMES:
                break
            rgb = frame.to_ndarray(format="rgb24")
            rgb[:MARK_HEIGHT] = 0
            rgb[:MARK_HEIGHT, n * MARK_WIDTH : (n + 1) * MARK_WIDTH] = 255
            new = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            new.pts = n
            dst.mux(stream.encode(new))
        dst.mux(stream.encode(None))
    return out


def frame_number(frame: av.VideoFrame) -> int | None:
    """The number marked on a frame of `short_clip`; None on a frame without a mark."""
    strip = frame.to_ndarray(format="gray")[4 : MARK_HEIGHT - 4, : SHORT_FRAMES * MARK_WIDTH]
    cells = strip.reshape(strip.shape[0], SHORT_FRAMES, MARK_WIDTH).mean(axis=(0, 2))
    best = int(np.argmax(cells))
    return best if cells[best] > 128 else None


@pytest.fixture
def server(clip: Path) -> Iterator[RtspServer]:
    srv = RtspServer({"cam1": clip, "cam2": clip})
    try:
        yield srv.start()
    finally:
        srv.stop()


def open_stream(url: str, read_timeout: float = 5.0) -> av.container.InputContainer:
    return av.open(url, options=OPTIONS, timeout=(5.0, read_timeout))


def read_frames(url: str, count: int) -> list[av.VideoFrame]:
    with open_stream(url) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame)
            if len(frames) == count:
                break
    return frames


def test_two_mounts_serve_h264_frames_of_the_clip_size(server: RtspServer) -> None:
    for mount in ("cam1", "cam2"):
        started = time.monotonic()
        with open_stream(server.url(mount)) as container:
            opened = time.monotonic() - started
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            frames = []
            for frame in container.decode(stream):
                frames.append(frame)
                if len(frames) == 5:
                    break
        assert opened < 3.0, f"{mount}: opening took {opened:.2f} s"
        assert len(frames) == 5
        assert all((f.width, f.height) == CLIP_SIZE for f in frames)


def test_fps_above_the_file_rate_and_the_clip_loops(short_clip: Path) -> None:
    srv = RtspServer({"fast": short_clip}, fps=30)
    try:
        srv.start()
        with open_stream(srv.url("fast")) as container:
            frames = container.decode(video=0)
            next(frames)  # timing starts at the first frame
            started = time.monotonic()
            numbers: list[int | None] = []
            rate = 0.0
            for frame in frames:
                numbers.append(frame_number(frame))
                elapsed = time.monotonic() - started
                if not rate and elapsed >= 3.0:
                    rate = len(numbers) / elapsed
                if elapsed >= 6.0:
                    break
        assert 20 <= rate <= 40, f"{rate:.1f} frames/s at --fps 30"
        assert time.monotonic() - started >= 6.0, "the stream ended"
        marked = [n for n in numbers if n is not None]
        assert len(marked) >= 0.9 * len(numbers), f"frames without a mark: {numbers}"
        # The 3 s clip must have started again within 6 s: its number falls from the end to 0.
        wraps = [i for i in range(1, len(marked)) if marked[i - 1] >= 25 and marked[i] <= 4]
        assert wraps, f"the clip did not loop: {marked}"
        # Past the loop it plays on, not stuck on one frame.
        assert len(set(marked[wraps[0] :])) >= 5, f"stuck after the loop: {marked}"
        assert "cannot loop" not in srv.stderr()
    finally:
        srv.stop()


def drain(frames: Iterator[av.VideoFrame], limit_s: float) -> tuple[float, str]:
    """Decode until the stream ends or fails; the seconds it took and how it ended."""
    started = time.monotonic()
    try:
        for _ in frames:
            assert time.monotonic() - started < limit_s, "the client kept getting frames"
    except (av.error.FFmpegError, OSError) as exc:
        return time.monotonic() - started, type(exc).__name__
    return time.monotonic() - started, "end of stream"


def test_kill_ends_clients_refuses_connections_and_restart_serves_again(
    server: RtspServer,
) -> None:
    url = server.url("cam1")
    with open_stream(url) as container:
        frames = container.decode(video=0)
        next(frames)
        server.kill()
        took, _how = drain(frames, limit_s=10.0)
    assert took < 8.0, f"took {took:.1f} s to notice the kill"
    with pytest.raises(ConnectionRefusedError):
        open_stream(url)
    server.restart()
    assert len(read_frames(url, 3)) == 3


def test_freeze_stalls_clients_and_thaw_serves_again(server: RtspServer) -> None:
    url = server.url("cam2")
    with open_stream(url, read_timeout=FREEZE_READ_TIMEOUT_S) as container:
        frames = container.decode(video=0)
        next(frames)
        server.freeze()
        took, _how = drain(frames, limit_s=15.0)
    server.thaw()
    # FFmpeg's RTSP reader gives up after twice the read timeout (4 s here, measured).
    assert took < 2 * FREEZE_READ_TIMEOUT_S + 2.0, f"took {took:.1f} s to notice the freeze"
    assert len(read_frames(url, 3)) == 3
