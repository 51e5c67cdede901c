"""A camera that cannot work as configured is told apart from an outage: a refused login,
a stream the server does not have, a host that does not exist. Said once, loudly, in the
log, the `source_status` event, /healthz and the metrics; against a real RTSP server."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from streamer import Event, EventType, Pipeline
from streamer.events.event import SourceProblem, SourceState
from streamer.sources.problems import diagnose
from tests.conftest import DEMO_CONFIDENCE, DEMO_FPS, write_pipeline
from tools.rtsp import RtspServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST_RETRY = ", reconnect: {initial_delay_s: 0.2, max_delay_s: 0.5}"


def run_for(path: Path, seconds: float) -> tuple[list[Event], Pipeline, dict[str, Any]]:
    """The pipeline of `path` for `seconds`: its events, itself, and its health just before
    it was stopped."""
    events: list[Event] = []
    with Pipeline.from_file(path, on_event=events.append) as pipeline:
        pipeline.start()
        time.sleep(seconds)
        health = pipeline.health().to_dict()
    return events, pipeline, health


def camera_pipeline(tmp_path: Path, uri: str, model: Path) -> Path:
    return write_pipeline(
        tmp_path / "cam.yaml",
        f"name: cam\nevents: {{emit: [detections]}}\nsink: none\n"
        f"sources:\n  - {{id: cam1, uri: '{uri}'{FAST_RETRY}}}\n"
        f"model:\n  path: '{model}'\n{DEMO_CONFIDENCE}",
    )


def statuses(events: list[Event]) -> list[tuple[SourceState | None, object]]:
    return [(e.status, e.reason) for e in events if e.type is EventType.SOURCE_STATUS]


@pytest.fixture
def locked_camera(demo_camera_clip: Path):
    with RtspServer({"cam1": demo_camera_clip}, fps=DEMO_FPS, login="viewer:s3cret") as server:
        yield server


@pytest.mark.parametrize(
    ("login", "mount", "problem"),
    [("viewer:wrong", "cam1", SourceProblem.UNAUTHORIZED),
     ("", "cam1", SourceProblem.UNAUTHORIZED),
     ("viewer:s3cret", "nope", SourceProblem.NOT_FOUND)],
    ids=["wrong-password", "no-login", "no-such-stream"],
)  # fmt: skip
def test_a_camera_that_cannot_work_as_configured_is_said_once(
    tmp_path, locked_camera, demo_model, caplog, login, mount, problem
):
    auth = f"{login}@" if login else ""
    uri = f"rtsp://{auth}127.0.0.1:{locked_camera.port}/{mount}"
    caplog.set_level(logging.WARNING, logger="streamer")
    events, pipeline, health = run_for(camera_pipeline(tmp_path, uri, demo_model), 4.0)
    assert pipeline.stats()["sources"]["cam1"]["reconnects"] >= 4  # it kept trying...
    # ...but said it once: one disconnected event with the reason, and one log line.
    assert statuses(events) == [(SourceState.DISCONNECTED, problem), (SourceState.ENDED, None)]
    said = [r for r in caplog.records if problem.value in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.ERROR
    assert "s3cret" not in caplog.text and "wrong" not in caplog.text.replace(problem, "")
    assert not [r for r in caplog.records if "retrying in" in r.getMessage()]  # no outage talk
    assert health["status"] == "unhealthy"  # at once, not after the retry budget
    assert health["sources"]["cam1"]["problem"] == problem.value


def test_the_right_login_connects(tmp_path, locked_camera, demo_model):
    uri = f"rtsp://viewer:s3cret@127.0.0.1:{locked_camera.port}/cam1"
    events, _pipeline, _health = run_for(camera_pipeline(tmp_path, uri, demo_model), 3.0)
    assert statuses(events)[0] == (SourceState.CONNECTED, None)
    assert any(e.type is EventType.DETECTIONS for e in events)


def test_a_host_that_does_not_exist_is_an_invalid_url_and_one_that_is_down_an_outage():
    import av.error

    eio = av.error.OSError(5, "Input/output error")
    nowhere = diagnose(eio, "rtsp://no-such-camera.invalid/stream1")
    assert nowhere is not None and nowhere.problem is SourceProblem.INVALID_URL
    assert "no-such-camera.invalid" in nowhere.advice
    assert diagnose(eio, "rtsp://127.0.0.1:9/stream1") is None  # exists, is down
    assert diagnose(ConnectionRefusedError(111, "refused"), "rtsp://127.0.0.1/x") is None
    started = time.monotonic()
    assert diagnose(av.error.ProtocolNotFoundError(-1, "x"), "rtspx://c/x") is not None
    assert time.monotonic() - started < 1
