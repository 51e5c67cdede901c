"""Shutdown leaves nothing behind: every thread of a pipeline ends, in process, with a
real RTSP camera and a real redis-server, whether it drains or stops at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer import Pipeline, PipelineState
from streamer.models.sessions import PROVIDERS, plan_workers, usable_cores
from streamer.pipeline.lifecycle import DRAIN_TIMEOUT_S
from tests.conftest import sources_pipeline
from tools.rtsp import RtspServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def camera(demo_camera_clip: Path) -> Iterator[RtspServer]:
    with RtspServer({"cam1": demo_camera_clip}, fps=10) as server:
        yield server


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("streamer.")]


@pytest.fixture
def pipeline(
    tmp_path: Path, camera: RtspServer, demo_model: Path, redis_server: Any
) -> Iterator[Pipeline]:
    """A pipeline on the camera, running and delivering events; stopped if a test fails."""
    path = sources_pipeline(tmp_path, "bye", {"cam1": camera.url("cam1")}, demo_model)
    running = Pipeline.from_file(path, redis_url=redis_server.url)
    running.start()
    try:
        deadline = time.monotonic() + 30
        while running.stats()["events"]["delivered"] < 10:
            assert time.monotonic() < deadline, "no events from the camera"
            time.sleep(0.1)
        yield running
    finally:
        running.stop(0)


def test_stop_drains_and_every_thread_ends(pipeline):
    threads = pipeline_threads()
    # The source, three stages, two sinks (Redis, in process), the watcher, and the
    # inference workers started so far.
    workers = [name for name in threads if name.startswith("streamer.infer_")]
    assert len(threads) - len(workers) == 7
    planned = plan_workers(PROVIDERS["cpu"], None, None, usable_cores()).workers
    assert 1 <= len(workers) <= planned
    pipeline.stop()
    assert pipeline.state is PipelineState.STOPPED
    assert pipeline.join(10.0)
    assert pipeline_threads() == []
    events = pipeline.stats()["events"]
    assert events["emitted"] == events["delivered"] and events["lost"] == 0


def test_a_stop_at_once_ends_every_thread_and_counts_what_it_cut_short(pipeline):
    """Stopping at once takes a fraction of what draining may take."""
    started = time.monotonic()
    pipeline.stop(0)
    took = time.monotonic() - started
    assert pipeline.join(0)
    assert took < DRAIN_TIMEOUT_S / 2, f"a stop at once took {took:.1f} s"
    assert pipeline_threads() == []
    events = pipeline.stats()["events"]
    # What a halt cannot deliver is counted, never silently gone.
    assert events["emitted"] == events["delivered"] + events["lost"]
