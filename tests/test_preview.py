"""Seeing what the model sees: the preview page in a real headless Chromium during a real
RTSP run, /healthz as the camera server dies and returns, snapshots, recordings, and the
per-source metrics the operator's port serves."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from streamer import Pipeline
from streamer.config import load_config
from streamer.observability.server import OperatorServer
from streamer.preview.board import WATCHED_S, FrameBoard, Shown
from streamer.preview.drawing import LINE_COLOUR, PALETTE, ZONE_COLOUR, Regions
from streamer.preview.recording import Recorder
from streamer.runtime.clock import FakeClock
from streamer.runtime.messages import Detections, EndOfStream, EndReason, Frame
from streamer.runtime.queues import Overflow, StageQueue
from streamer.runtime.threads import Supervisor
from streamer.shards.supervisor import ShardedPipeline
from tests.conftest import (
    DEMO_CONFIDENCE,
    DEMO_FPS,
    DEMO_FRAMES,
    REPO,
    run_cli,
    wait_until,
    write_pipeline,
)
from tools.rtsp import RtspServer

pytestmark = [pytest.mark.timeout(180)]

REGIONS = """zones:
  - name: lot_corner
    polygon: [[-40, 200], [300, 200], [300, 400], [-40, 400]]
lines:
  - name: midline
    points: [[300, 0], [300, 360]]
"""
SERVING = re.compile(r"on (http://127\.0\.0\.1:\d+/)")


def preview_pipeline(
    folder: Path, uri: str, model: Path, extra: str = "", sections: str = ""
) -> Path:
    """`extra`: more of the source's keys; `sections`: more of the pipeline's."""
    return write_pipeline(
        folder / "preview.yaml",
        f"name: site\nevents: {{emit: [object_appeared, object_left]}}\n"
        f"sources:\n  - {{id: cam1, uri: '{uri}'{extra}}}\n"
        f"model:\n  path: '{model}'\n{DEMO_CONFIDENCE}{REGIONS}sink: none\n{sections}",
    )


def near(image: np.ndarray, bgr: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels of `image` are within `tolerance` of colour `bgr`."""
    diff = np.abs(image.astype(np.int16) - np.array(bgr, dtype=np.int16))
    return int(np.count_nonzero(diff.max(axis=2) <= tolerance))


def box_pixels(image: np.ndarray, tolerance: int = 12) -> int:
    """Pixels in the colours boxes of the demo model's classes (person, car) are drawn in."""
    return near(image, PALETTE[0], tolerance) + near(image, PALETTE[1], tolerance)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.skip("no headless Chromium here (scripts/setup.sh test installs Debian's chromium)")


def screenshot(url: str, out: Path) -> np.ndarray:
    """The page at `url` as a real headless Chromium renders it, as BGR."""
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1280,900", f"--screenshot={out}", url],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    image = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert image is not None, f"Chromium wrote no picture of {url}"
    return image


class RunningCli:
    """`streamer run ... --metrics-port 0` in a child process; its log read as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", *args, "--metrics-port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def url(self) -> str:
        """The address the run's log says it serves on."""
        found: list[str] = []

        def logged() -> bool:
            found.extend(m.group(1) for line in self.lines if (m := SERVING.search(line)))
            return bool(found) or self.proc.poll() is not None

        wait_until(logged, 60, "the log line naming the preview's address")
        assert found, "".join(self.lines)
        return found[0]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._reader.join(timeout=10)


@pytest.fixture
def camera(demo_camera_clip: Path) -> Iterator[RtspServer]:
    with RtspServer({"cam1": demo_camera_clip}, fps=DEMO_FPS) as server:
        yield server


def health(url: str) -> tuple[int, dict[str, Any]]:
    status, body = get(url + "healthz")
    return status, json.loads(body)


@pytest.mark.integration
def test_the_preview_page_shows_the_camera_with_its_boxes_and_healthz_follows_the_camera(
    tmp_path, camera, demo_model
):
    fast_retry = ", reconnect: {initial_delay_s: 0.2, max_delay_s: 1.0}, read_timeout_s: 2"
    pipeline = preview_pipeline(tmp_path, camera.url("cam1"), demo_model, fast_retry)
    cli = RunningCli(str(pipeline), "--duration", "120")
    try:
        url = cli.url()

        def live_with_boxes() -> bool:
            status, doc = health(url)
            if status != 200 or doc["sources"]["cam1"]["state"] != "connected":
                return False
            return box_pixels(decode_jpeg(get(url + "snapshot/cam1.jpg")[1])) > 100

        wait_until(live_with_boxes, 60, "the camera connected, with boxes on its frames")
        page = screenshot(url, tmp_path / "page.png")
        # The page shows the frame itself (its zone and line) with boxes drawn on it.
        assert near(page, LINE_COLOUR, tolerance=40) > 150, "no line drawn on the page"
        assert near(page, ZONE_COLOUR, tolerance=40) > 150, "no zone drawn on the page"
        assert box_pixels(page, tolerance=40) > 100, "no box drawn on the page"
        raw = next(av.open(str(REPO / "sample_videos" / "parking.mp4")).decode(video=0))
        assert box_pixels(raw.to_ndarray(format="bgr24"), tolerance=40) < 20  # not in the clip

        live = decode_jpeg(get(url + "snapshot/cam1.jpg")[1])
        assert live.shape == (360, 640, 3)  # the source's own size
        camera.kill()
        wait_until(lambda: health(url)[0] == 503, 30, "/healthz to say 503 with the camera down")
        doc = health(url)[1]
        assert doc["status"] == "unhealthy"
        assert doc["sources"]["cam1"]["state"] in ("disconnected", "reconnecting")
        assert any("cam1" in problem for problem in doc["problems"]), doc
        down = decode_jpeg(get(url + "snapshot/cam1.jpg")[1])
        assert down.mean() < 0.6 * live.mean(), "the frame of a camera that is down is dimmed"
        camera.restart()
        wait_until(lambda: health(url)[0] == 200, 60, "/healthz to say 200 with the camera back")
    finally:
        code = cli.stop()
    assert code == 130, "".join(cli.lines)


def test_record_writes_every_processed_frame_with_the_drawings(tmp_path, demo_clip, demo_model):
    pipeline = write_pipeline(
        tmp_path / "two.yaml",
        f"name: two\nevents: {{emit: [detections]}}\nsources:\n"
        f"  - {{id: a, uri: '{demo_clip}'}}\n  - {{id: b, uri: '{demo_clip}'}}\n"
        f"model:\n  path: '{demo_model}'\n{DEMO_CONFIDENCE}{REGIONS}sink: none\n",
    )
    stats_file = tmp_path / "stats.json"
    result = run_cli("run", str(pipeline), "--max-frames", "40", "--record",
                     str(tmp_path / "out.mp4"), "--stats-json", str(stats_file))  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = json.loads(stats_file.read_text())
    for source in ("a", "b"):
        with av.open(str(tmp_path / f"out.{source}.mp4")) as container:
            frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
        assert len(frames) == stats["sources"][source]["processed"] == 40
        assert frames[0].shape == (360, 640, 3)
        assert all(near(f, LINE_COLOUR, tolerance=40) > 100 for f in frames)
    assert not (tmp_path / "out.mp4").exists()


def test_record_is_refused_at_start_where_it_cannot_be_written(tmp_path, demo_clip, demo_model):
    pipeline = preview_pipeline(tmp_path, str(demo_clip), demo_model)
    for target, says in ((tmp_path / "nowhere" / "out.mp4", "does not exist"),
                         (tmp_path / "out.txt", "name a video file")):  # fmt: skip
        result = run_cli("run", str(pipeline), "--record", str(target))
        assert result.returncode == 2
        assert says in result.stderr and "Traceback" not in result.stderr


def test_snapshots_and_metrics_of_a_run_in_python(tmp_path, demo_clip, demo_model):
    pipeline = Pipeline.from_file(
        preview_pipeline(tmp_path, str(demo_clip), demo_model),
        max_frames=30,
        on_event=lambda _event: None,
    )
    with OperatorServer(pipeline) as server:
        assert server.url.startswith("http://127.0.0.1:")  # not open to the network unasked
        before = decode_jpeg(get(server.url + "snapshot/cam1.jpg")[1])
        assert before.mean() < 60  # no frame yet: a blank picture saying so
        pipeline.run()
        snapshot = decode_jpeg(pipeline.snapshot("cam1"))
        assert snapshot.shape == (360, 640, 3)
        assert get(server.url + "snapshot/nope.jpg")[0] == 404
        assert get(server.url + "nope")[0] == 404
        status, doc = health(server.url)
        assert status == 200 and doc["sources"]["cam1"]["state"] == "ended"
        metrics = get(server.url + "metrics")[1].decode()
    assert 'streamer_source_frames_processed_total{source="cam1"} 30.0' in metrics
    assert 'streamer_source_state{source="cam1",state="ended"} 1.0' in metrics
    with pytest.raises(KeyError):
        pipeline.snapshot("nope")


def test_every_metric_served_is_documented_by_the_name_it_is_served_under(
    tmp_path, demo_clip, demo_model
):
    # Drift judged every 0.2 s of video: its families have samples too.
    health = "health: {baseline_s: 0.2, drift: {window_s: 0.2, min_frames: 1, min_detections: 1}}\n"
    pipeline = Pipeline.from_file(
        preview_pipeline(tmp_path, str(demo_clip), demo_model, ", max_fps: 5", health),
        max_frames=30,
        on_event=lambda _event: None,
    )
    pipeline.run()  # at 5 of 15 fps, frames are dropped: every family has samples
    with OperatorServer(pipeline) as server:
        text = get(server.url + "metrics")[1].decode()
    served = set(re.findall(r"^(streamer_\w+?)[{ ]", text, re.M))
    assert {"streamer_source_frames_dropped_total", "streamer_drift_score"} <= served
    sharded_only = {"streamer_shard_restarts_total", "streamer_shard_sources"}
    table = (REPO / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(streamer_\w+)", table, re.M))
    assert documented == served | sharded_only
    for doc in (REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))):
        named = set(re.findall(r"\b(streamer_[a-z_]+)(?:\{|`)", doc.read_text()))
        assert named <= documented, f"{doc.name} names metrics not served: {named - documented}"


@pytest.mark.integration
def test_a_sharded_run_shows_every_cameras_frames_and_records_them(
    tmp_path, redis_server, demo_clip, demo_model
):
    """Frames drawn in shard processes reach the supervisor's page, and each shard
    records its own sources."""
    sources = "".join(f"  - {{id: {sid}, uri: '{demo_clip}'}}\n" for sid in ("a", "b"))
    pipeline_file = write_pipeline(
        tmp_path / "shards.yaml",
        f"name: shards\nworkers: 2\nevents: {{emit: [detections]}}\nsources:\n{sources}"
        f"model:\n  path: '{demo_model}'\n{DEMO_CONFIDENCE}{REGIONS}",
    )
    pipeline = ShardedPipeline.from_config(
        load_config(pipeline_file),
        redis_url=redis_server.url,
        realtime=True,
        max_frames=150,
        record=tmp_path / "site.mkv",
    )
    with OperatorServer(pipeline) as server, pipeline:
        pipeline.start()

        def drawn(sid: str) -> bool:
            status, body = get(server.url + f"snapshot/{sid}.jpg")
            image = decode_jpeg(body)
            return status == 200 and image.shape == (360, 640, 3) and box_pixels(image) > 100

        for sid in ("a", "b"):
            wait_until(lambda sid=sid: drawn(sid), 30, f"a frame of {sid} with boxes")
        assert health(server.url)[0] == 200
        while not pipeline.join(0.5):
            pass
        stats = pipeline.stats()
    assert len(set(stats["shards"])) == 2
    for sid in ("a", "b"):
        with av.open(str(tmp_path / f"site.{sid}.mkv")) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == stats["sources"][sid]["processed"] == 150


@pytest.mark.integration
def test_a_dead_shards_cameras_show_dimmed_until_their_new_shard_sends_pictures(
    tmp_path, redis_server, demo_clip, demo_model
):
    sources = "".join(f"  - {{id: {sid}, uri: '{demo_clip}'}}\n" for sid in ("a", "b"))
    pipeline_file = write_pipeline(
        tmp_path / "shards.yaml",
        f"name: dying\nworkers: 2\nevents: {{emit: [detections]}}\nsources:\n{sources}"
        f"model:\n  path: '{demo_model}'\n{DEMO_CONFIDENCE}{REGIONS}",
    )
    config = load_config(pipeline_file)
    pipeline = ShardedPipeline.from_config(config, redis_url=redis_server.url, realtime=True)
    with OperatorServer(pipeline) as server, pipeline:
        pipeline.start()
        victim = next(name for name, sources in pipeline.shards.items() if "a" in sources)

        def picture() -> np.ndarray:
            return decode_jpeg(get(server.url + "snapshot/a.jpg")[1])

        wait_until(lambda: box_pixels(picture()) > 100, 30, "a frame of a with boxes")
        live = picture().mean()
        pid = pipeline.shard_pid(victim)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: picture().mean() < 0.6 * live, 10, "the dead shard's picture dimmed")
        wait_until(lambda: box_pixels(picture()) > 100, 30, "pictures from the new shard")
        assert pipeline.shard_pid(victim) not in (None, pid)
        pipeline.stop(0.0)


def test_snapshots_asked_for_from_many_threads_while_recording(tmp_path, demo_clip, demo_model):
    """The preview's threads and the recorder convert the same frames at once (a frame's
    own scaler shared between threads crashed the process)."""
    pipeline = Pipeline.from_file(
        preview_pipeline(tmp_path, str(demo_clip), demo_model),
        on_event=lambda _event: None,
        record=tmp_path / "out.mp4",
    )
    taken = [0]
    done = threading.Event()

    def look() -> None:
        while not done.is_set():
            decode_jpeg(pipeline.snapshot("cam1"))
            taken[0] += 1

    lookers = [threading.Thread(target=look) for _ in range(3)]
    pipeline.start()
    for thread in lookers:
        thread.start()
    try:
        pipeline.join(120)
    finally:
        done.set()
        for thread in lookers:
            thread.join(30)
    assert pipeline.stats()["frames"]["processed"] == DEMO_FRAMES
    assert taken[0] > 100


def test_a_source_nobody_looks_at_holds_no_frame():
    """Frames are kept only for sources someone asked a snapshot of lately."""
    clock = FakeClock()
    board = FrameBoard(["person"], {"a": Regions(), "b": Regions()}, clock=clock)
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def show(source: str, index: int) -> None:
        picture = np.full((36, 64, 3), 10 * index, np.uint8)
        frame = Frame(source, index, None, 0, clock.time(), None, picture, 0.0)
        board.show(Shown(frame, empty, ()))

    show("a", 1)
    assert board.held() == set()  # nobody looked yet
    later = threading.Timer(0.2, show, ("a", 2))
    later.start()
    assert decode_jpeg(board.snapshot("a")).mean() == pytest.approx(20, abs=2)  # the next one
    later.join(5)
    show("a", 3)
    show("b", 3)
    assert board.held() == {"a"}
    clock.advance(WATCHED_S + 1)
    show("a", 4)
    assert board.held() == set()  # not looked at for WATCHED_S: let go


def test_a_recording_keeps_its_size_when_the_stream_changes_size(tmp_path):
    """Frames of another size (a camera that changed resolution, an odd side) are scaled
    to the recording's size rather than failing the encoder."""
    board = FrameBoard(["person"], {"a": Regions()})
    inbox: StageQueue[Shown] = StageQueue("record", 64, Overflow.BLOCK, lambda _i, _r: None)
    recorder = Recorder(inbox, board, {"a": tmp_path / "a.mp4"}, Supervisor())
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    sizes = [(48, 64)] * 5 + [(24, 32)] * 5 + [(25, 33)] * 5
    never = threading.Event()
    for i, (h, w) in enumerate(sizes):
        frame = Frame("a", i, None, 0, 0.0, None, np.full((h, w, 3), 100, np.uint8), i / 15)
        inbox.put(Shown(frame, empty, ()), never)
    inbox.put_control(EndOfStream("a", EndReason.EOF))
    recorder.run()
    with av.open(str(tmp_path / "a.mp4")) as container:
        frames = [(f.height, f.width) for f in container.decode(video=0)]
    assert frames == [(48, 64)] * len(sizes)
