"""Streams that are not what a camera should send: a frame size that changes midway, no video
track, H.265 from a camera, garbage in answer to RTSP, metadata that is not UTF-8."""

from __future__ import annotations

import functools
import http.server
import random
import re
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import av
import numpy as np
import pytest

from streamer.analytics.boxes import iou_matrix
from tests.conftest import (
    DEMO_CONFIDENCE,
    DEMO_FPS,
    one_source_pipeline,
    read_events,
    run_cli,
    run_with_stats,
    sources_pipeline,
)
from tests.test_bad_input import assert_one_line_error, pipeline_text
from tests.test_decode_fuzz import encode_segment
from tools.rtsp import RtspServer, rtsp_server_available

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FIRST_SIZE, SECOND_SIZE = (768, 432), (480, 360)  # another size and another shape
SWITCH = 30  # the frame at which the size changes


def stream_events(client, name: str, source: str = "cam1") -> list[dict]:
    return [e for e in read_events(client, f"streamer:{name}:events") if e["source"] == source]


@pytest.fixture(scope="module")
def resized_midway(demo_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """30 frames of the demo clip at 768x432 then 30 at 480x360, in one stream: a raw H.264
    stream with new parameter sets midway, and two MPEG-TS files joined as HLS segments are.
    Three people walk through these frames."""
    folder = tmp_path_factory.mktemp("resized")
    made = {}
    for container, suffix in (("h264", ".h264"), ("mpegts", ".ts")):
        first, second = folder / f"first{suffix}", folder / f"second{suffix}"
        encode_segment(demo_clip, first, container, range(100, 100 + SWITCH), FIRST_SIZE)
        # Its timestamps go on from the first part's, as a camera's would.
        encode_segment(demo_clip, second, container, range(100 + SWITCH, 160), SECOND_SIZE,
                       first_pts=SWITCH)  # fmt: skip
        made[container] = folder / f"resized{suffix}"
        made[container].write_bytes(first.read_bytes() + second.read_bytes())
    return made


def person_boxes(event: dict) -> np.ndarray:
    return np.array([o["bbox"] for o in event["objects"] if o["label"] == "person"], np.float32)


@pytest.mark.parametrize("container", ["h264", "mpegts"])
def test_a_stream_whose_frame_size_changes_midway(
    tmp_path, redis_client, redis_server, resized_midway, demo_model, container
):
    clip = resized_midway[container]
    pipeline = sources_pipeline(
        tmp_path, "resized", {"cam1": str(clip)}, demo_model, DEMO_CONFIDENCE
    )
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert result.returncode == 0, result.stderr
    assert stats["frames"] == {
        "decoded": 60, "processed": 60, "still": 0, "late": 0, "dropped": {},
    }  # fmt: skip
    detections = {
        e["frame"]["index"]: e
        for e in stream_events(redis_client, "resized")
        if e["type"] == "detections"
    }
    assert sorted(detections) == list(range(60))
    for index, event in detections.items():
        width, height = FIRST_SIZE if index < SWITCH else SECOND_SIZE
        for o in event["objects"]:
            x1, y1, x2, y2 = o["bbox"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height, (index, o, width, height)
    # Each frame was letterboxed at its own size and its boxes mapped back to its own pixels:
    # the people of the last large frame, scaled to the small size, are where the first small
    # frame shows them.
    before, after = person_boxes(detections[SWITCH - 1]), person_boxes(detections[SWITCH])
    assert len(before) and len(after), (detections[SWITCH - 1], detections[SWITCH])
    scale = np.array([SECOND_SIZE[0] / FIRST_SIZE[0], SECOND_SIZE[1] / FIRST_SIZE[1]] * 2)
    overlap = iou_matrix(before * scale, after)
    assert overlap.max(axis=1).min() > 0.6, overlap
    with_person = [i for i, e in detections.items() if len(person_boxes(e))]
    assert len([i for i in with_person if i >= SWITCH]) >= 25  # detected as well after the change


@pytest.mark.skipif(rtsp_server_available() is not None, reason=f"{rtsp_server_available()}")
def test_a_camera_whose_frame_size_changes_while_it_streams(
    tmp_path, redis_client, redis_server, resized_midway, demo_model
):
    clip = resized_midway["mpegts"]
    # The same frames from the file, offline: each one's people in its own pixels.
    reference_pipeline = sources_pipeline(
        tmp_path, "ref", {"cam1": str(clip)}, demo_model, DEMO_CONFIDENCE
    )
    result, _ = run_with_stats(reference_pipeline, redis_server.url)
    assert result.returncode == 0, result.stderr
    reference = {
        e["frame"]["index"]: person_boxes(e)
        for e in stream_events(redis_client, "ref")
        if e["type"] == "detections" and person_boxes(e).size
    }
    # The camera plays 2 s at 768x432, then 2 s at 480x360, and again: a new size and new
    # parameter sets on the one RTSP session each time.
    with RtspServer({"cam1": clip}, follow_size=True) as camera:
        extra = DEMO_CONFIDENCE + "realtime: {max_latency_ms: 1000}\n"
        pipeline = sources_pipeline(
            tmp_path, "live", {"cam1": camera.url("cam1")}, demo_model, extra
        )
        result, stats = run_with_stats(pipeline, redis_server.url, "--duration", "8")
    assert result.returncode == 0, result.stderr
    assert stats["sources"]["cam1"]["reconnects"] == 0
    assert "decode:decode_error" not in stats["frames"]["dropped"], stats["frames"]
    live = [
        person_boxes(e)
        for e in stream_events(redis_client, "live")
        if e["type"] == "detections" and person_boxes(e).size
    ]
    # The camera streamed at its 15 fps for most of the run, and nearly every frame shows the
    # three people, whatever its size.
    decoded = stats["sources"]["cam1"]["frames"]
    assert decoded >= 0.5 * DEMO_FPS * stats["wall_s"], stats
    assert len(live) >= 0.8 * decoded, (len(live), decoded)
    matched_sizes = set()
    for boxes in live:
        # The file's frame that shows a person where this live frame does. Had a frame been
        # letterboxed or mapped back at the other size, its boxes would be scaled by 1.6 or
        # 1.2 and match no frame of its own half.
        best, index = max((iou_matrix(boxes, ref).max(), i) for i, ref in reference.items())
        assert best > 0.7, (boxes, best)
        matched_sizes.add(FIRST_SIZE if index < SWITCH else SECOND_SIZE)
    assert matched_sizes == {FIRST_SIZE, SECOND_SIZE}


def latin1_metadata(segment: Path, dst: Path) -> None:
    """`segment` remuxed with a title and track name in Latin-1, as some cameras and old
    muxers write them: 'Caméra 1' whose é is the single byte 0xE9, not UTF-8."""
    with av.open(str(segment)) as src, av.open(str(dst), "w") as out:
        out.metadata["title"] = "Caméra 1"
        stream = out.add_stream_from_template(src.streams.video[0])
        stream.metadata["handler_name"] = "Caméra 1"
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    # The same length, so the boxes around it stay valid.
    dst.write_bytes(dst.read_bytes().replace("Caméra 1".encode(), b"Cam\xe9ra 1 "))


def test_a_file_whose_metadata_is_not_utf8(tmp_path, redis_server, demo_clip, demo_model):
    segment, clip = tmp_path / "segment.mp4", tmp_path / "latin1.mp4"
    encode_segment(demo_clip, segment, "mp4")
    latin1_metadata(segment, clip)
    with pytest.raises(UnicodeDecodeError):  # what PyAV does by default
        av.open(str(clip)).close()
    pipeline = sources_pipeline(
        tmp_path, "latin1", {"cam1": str(clip)}, demo_model, DEMO_CONFIDENCE
    )
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert stats["frames"]["processed"] == 60


@pytest.fixture(scope="module")
def audio_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of silence in AAC, in an MP4 container (.m4a) without a video track."""
    path = tmp_path_factory.mktemp("audio") / "speech.m4a"
    write_silence(path, "mp4")
    return path


def write_silence(path: Path, container: str, **options: str) -> None:
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream("aac", rate=48000)
        for _ in range(20):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.float32), "flt", "mono")
            chunk.sample_rate = 48000
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))


def test_a_file_with_no_video_track(tmp_path, redis_server, audio_only, demo_clip, demo_model):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(pipeline_text(audio_only, demo_model, DEMO_CONFIDENCE))
    expected = f"{audio_only}: no video track"
    assert_one_line_error(run_cli("validate", str(pipeline)), expected)
    assert_one_line_error(run_cli("run", str(pipeline), "--redis-url", redis_server.url), expected)
    # Given on the command line instead of in the file.
    pipeline.write_text(pipeline_text(demo_clip, demo_model, DEMO_CONFIDENCE))
    result = run_cli("run", str(pipeline), "--redis-url", redis_server.url,
                     "--source", str(audio_only))  # fmt: skip
    assert_one_line_error(result, expected)
    result = run_cli("run", str(pipeline), "--redis-url", redis_server.url,
                     "--source", f"mic={audio_only}")  # fmt: skip
    assert_one_line_error(result, expected)


@pytest.fixture
def audio_only_hls(tmp_path: Path) -> Iterator[str]:
    """A live HLS stream, served over HTTP on 127.0.0.1, with audio and no video."""
    folder = tmp_path / "hls"
    folder.mkdir()
    write_silence(folder / "index.m3u8", "hls", hls_time="1", hls_list_size="0")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        thread = threading.Thread(target=web.serve_forever, name="hls-server")
        thread.start()
        try:
            yield f"http://127.0.0.1:{web.server_address[1]}/index.m3u8"
        finally:
            web.shutdown()
            thread.join(timeout=5)


def test_a_live_stream_with_no_video_track_is_retried_and_says_why(
    tmp_path, redis_client, redis_server, audio_only_hls, demo_model
):
    pipeline = sources_pipeline(
        tmp_path, "radio", {"cam1": audio_only_hls}, demo_model, DEMO_CONFIDENCE
    )
    result, stats = run_with_stats(pipeline, redis_server.url, "--duration", "3")
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert stats["sources"]["cam1"]["reconnects"] >= 2
    statuses = [(e["status"], e["detail"] or "") for e in stream_events(redis_client, "radio")]
    assert statuses[0][0] == "disconnected", statuses  # never "connected"
    assert any(s == "disconnected" and "no video track" in d for s, d in statuses), statuses


@pytest.mark.skipif(
    rtsp_server_available("h265") is not None, reason=f"{rtsp_server_available('h265')}"
)
def test_an_h265_camera(tmp_path, redis_client, redis_server, demo_clip, demo_model):
    # The camera loops a part of the demo clip where three people walk through.
    people = tmp_path / "people.mp4"
    encode_segment(demo_clip, people, "mp4", range(100, 160), FIRST_SIZE)
    with RtspServer({"cam1": people}, codec="h265") as camera:
        extra = DEMO_CONFIDENCE + "realtime: {max_latency_ms: 1000}\n"
        pipeline = sources_pipeline(
            tmp_path, "hevc", {"cam1": camera.url("cam1")}, demo_model, extra
        )
        result, stats = run_with_stats(pipeline, redis_server.url, "--duration", "5")
    assert result.returncode == 0, result.stderr
    assert stats["sources"]["cam1"]["reconnects"] == 0
    assert stats["sources"]["cam1"]["frames"] == stats["frames"]["decoded"]
    assert stats["frames"]["decoded"] >= 0.5 * DEMO_FPS * stats["wall_s"], stats  # 15 fps
    events = stream_events(redis_client, "hevc")
    assert events[0]["status"] == "connected"
    detections = [e for e in events if e["type"] == "detections"]
    assert len(detections) >= 0.8 * stats["frames"]["decoded"], (len(detections), stats)
    # Three people walk through every frame of the loop: the decoded pictures are sound.
    with_person = [e for e in detections if any(o["label"] == "person" for o in e["objects"])]
    assert len(with_person) >= 0.8 * len(detections), (len(with_person), len(detections))


class GarbageCamera:
    """A TCP server on 127.0.0.1 that answers RTSP clients with garbage:

    - `garbage`: random bytes as soon as a client connects, then the connection is closed;
    - `silent`: the connection is accepted and nothing is ever sent;
    - `no_video_sdp`: every request gets `200 OK` with random bytes as its SDP.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.stopping = threading.Event()
        self._server = socketserver.ThreadingTCPServer(
            ("127.0.0.1", 0), functools.partial(_GarbageHandler, camera=self)
        )
        # server_close() then waits for every connection's thread.
        self._server.block_on_close = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="garbage-cam")
        self.connections = 0

    @property
    def url(self) -> str:
        return f"rtsp://viewer:s3cret@127.0.0.1:{self._server.server_address[1]}/stream1"

    def __enter__(self) -> GarbageCamera:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _GarbageHandler(socketserver.BaseRequestHandler):
    def __init__(self, *args: object, camera: GarbageCamera) -> None:
        self.camera = camera
        super().__init__(*args)  # type: ignore[arg-type]

    def handle(self) -> None:
        camera = self.camera
        camera.connections += 1
        rng = random.Random(camera.connections)
        self.request.settimeout(0.1)
        if camera.mode == "garbage":
            self.request.sendall(rng.randbytes(4096))
            return
        pending = b""
        while not camera.stopping.is_set():
            try:
                chunk = self.request.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            while camera.mode == "no_video_sdp" and b"\r\n\r\n" in pending:
                request, pending = pending.split(b"\r\n\r\n", 1)
                cseq = re.search(rb"CSeq: *(\d+)", request)
                body = rng.randbytes(300)
                self.request.sendall(
                    b"RTSP/1.0 200 OK\r\nCSeq: " + (cseq.group(1) if cseq else b"1")
                    + b"\r\nContent-Type: application/sdp\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\n\r\n" + body
                )  # fmt: skip


@pytest.mark.parametrize(
    "mode",
    [
        "garbage",
        "silent",
        "no_video_sdp",
    ],
)
def test_a_camera_that_answers_garbage_is_retried(
    tmp_path, redis_client, redis_server, demo_model, mode
):
    with GarbageCamera(mode) as camera:
        # Opening gives up after 1 s on a silent camera, so a few attempts fit in 4 s.
        pipeline = one_source_pipeline(tmp_path, "junk", camera.url, demo_model,
                                       ", open_timeout_s: 1", DEMO_CONFIDENCE)  # fmt: skip
        result, stats = run_with_stats(pipeline, redis_server.url, "--duration", "4")
        connections = camera.connections
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr
    assert "rtsp://viewer:***@127.0.0.1" in result.stderr
    assert stats["sources"]["cam1"]["frames"] == 0
    assert stats["sources"]["cam1"]["reconnects"] >= 2
    assert connections >= 2
    statuses = [e["status"] for e in stream_events(redis_client, "junk")]
    assert statuses[:3] == ["disconnected", "reconnecting", "disconnected"], statuses
    assert statuses[-1] == "ended"


def test_the_garbage_camera_really_is_garbage():
    """What FFmpeg makes of each mode, so that the test above tries what it says."""
    options = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32768"}
    for mode in ("garbage", "silent"):
        with GarbageCamera(mode) as camera, pytest.raises(av.error.FFmpegError):
            av.open(camera.url, options=options, timeout=(1, 1))
    with (
        GarbageCamera("no_video_sdp") as camera,
        av.open(camera.url, options=options, timeout=(1, 1)) as container,
    ):
        assert not container.streams.video
