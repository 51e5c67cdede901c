"""Shutdown leaves nothing behind: every thread of a pipeline ends, in process, with a
real RTSP camera and a real redis-server, whether it drains (stop) or stops at once (halt)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.config import load_config
from streamer.pipeline import Pipeline
from tests.conftest import sources_pipeline
from tools.rtsp import RtspServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def camera(camera_clip: Path) -> Iterator[RtspServer]:
    with RtspServer({"cam1": camera_clip}, fps=10) as server:
        yield server


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("streamer.")]


@pytest.fixture
def pipeline(
    tmp_path: Path, camera: RtspServer, yolox_nano: Path, redis_server: Any
) -> Iterator[Pipeline]:
    """A pipeline on the camera, running and delivering events; halted if a test fails."""
    path = sources_pipeline(tmp_path, "bye", {"cam1": camera.url("cam1")}, yolox_nano)
    running = Pipeline(load_config(path), redis_server.url)
    running.start()
    try:
        deadline = time.monotonic() + 30
        while running.stats.snapshot()["events"]["delivered"] < 10:
            assert time.monotonic() < deadline, "no events from the camera"
            time.sleep(0.1)
        yield running
    finally:
        running.halt()
        running.join(10.0)


def test_stop_drains_and_every_thread_ends(pipeline):
    threads = pipeline_threads()
    # The source, three stages, the sink, and the inference workers started so far.
    workers = [name for name in threads if name.startswith("streamer.infer_")]
    assert len(threads) - len(workers) == 5
    assert 1 <= len(workers) <= pipeline.model.workers
    pipeline.stop()
    assert pipeline.join(10.0)
    assert pipeline_threads() == []
    events = pipeline.stats.snapshot()["events"]
    assert events["emitted"] == events["delivered"] and events["lost"] == 0


def test_halt_stops_at_once_and_every_thread_ends(pipeline):
    started = time.monotonic()
    pipeline.halt()
    assert pipeline.join(10.0)
    assert time.monotonic() - started < 5.0
    assert pipeline_threads() == []
    events = pipeline.stats.snapshot()["events"]
    # What a halt cannot deliver is counted, never silently gone.
    assert events["emitted"] == events["delivered"] + events["lost"]
