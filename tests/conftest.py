"""Shared fixtures: the shared assets, a real redis-server, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis

from tools.local_redis import RedisServer
from tools.rtsp import rtsp_server_available

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("STREAMER_ASSETS", REPO.parent / "shared" / "assets"))
SCHEMA = json.loads((REPO / "streamer" / "events" / "event-v1.json").read_text())
# Made once: `jsonschema.validate` checks the schema itself and builds a validator on every
# call (56 ms an event; a run's events took over a minute to check).
EVENT_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# The repository's own clip and model: what tests use whose point is not real footage.
DEMO_CLIP = REPO / "sample_videos" / "parking.mp4"  # 640x360, 15 fps, 300 frames
DEMO_MODEL = REPO / "models" / "demo-detector.onnx"  # person, car
DEMO_FPS = 15  # the clip's frame rate
DEMO_FRAMES = 300  # the clip's frames
DEMO_CONFIDENCE = "  confidence: 0.35\n"  # the model's threshold line, as pipelines/demo.yaml
CLI_TIMEOUT_S = 300


def asset(relative: str) -> Path:
    """A file from the shared test assets; the test is skipped, saying why, when it is absent."""
    path = ASSETS / relative
    if not path.is_file():
        pytest.skip(f"test asset {relative} not found under {ASSETS} (set STREAMER_ASSETS)")
    return path


@pytest.fixture(scope="session")
def demo_clip() -> Path:
    return DEMO_CLIP


@pytest.fixture(scope="session")
def demo_model() -> Path:
    return DEMO_MODEL


def servable(clip: Path) -> Path:
    """`clip`, for a test that serves it from a real RTSP server; skipped without one."""
    reason = rtsp_server_available()
    if reason is not None:
        pytest.skip(f"no RTSP server here: {reason}")
    return clip


@pytest.fixture(scope="session")
def demo_camera_clip() -> Path:
    """The repository's clip, for tests that serve it from a real RTSP server."""
    return servable(DEMO_CLIP)


@pytest.fixture(scope="session")
def person_clip() -> Path:
    return asset("videos/one-by-one-person-detection.mp4")


@pytest.fixture(scope="session")
def camera_clip(person_clip: Path) -> Path:
    """The person clip, for tests that serve it from a real RTSP server."""
    return servable(person_clip)


@pytest.fixture(scope="session")
def yolox_nano() -> Path:
    return asset("models/yolox_nano.onnx")


@pytest.fixture(scope="session")
def yolov8n() -> Path:
    return asset("models/yolov8n.onnx")


@pytest.fixture(scope="session")
def yolo11n() -> Path:
    return asset("models/yolo11n.onnx")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, timeout: float = CLI_TIMEOUT_S, cwd: Path | None = None) -> CliResult:
    """`streamer ARGS` in a child process, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "STREAMER_REDIS_URL": ""},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def run_with_stats(
    pipeline: Path, redis_url: str, *args: str, stats_file: Path | None = None
) -> tuple[CliResult, dict[str, Any]]:
    """`streamer run PIPELINE` with --stats-json (beside the file by default): the result and
    the stats it wrote."""
    stats_file = stats_file or pipeline.with_suffix(".stats.json")
    stats_file.unlink(missing_ok=True)
    result = run_cli("run", str(pipeline), "--redis-url", redis_url,
                     "--stats-json", str(stats_file), *args)  # fmt: skip
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    return result, stats


def read_events(client: redis.Redis, stream: str) -> list[dict[str, Any]]:
    """Every event in `stream`, each checked against the contract's JSON Schema."""
    events = []
    for _id, fields in client.xrange(stream):
        assert set(fields) == {b"event", b"type", b"source"}, fields.keys()
        event = json.loads(fields[b"event"])
        EVENT_VALIDATOR.validate(event)
        assert fields[b"type"].decode() == event["type"]
        assert fields[b"source"].decode() == event["source"]
        events.append(event)
    return events


def write_pipeline(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sources_pipeline(
    folder: Path,
    name: str,
    uris: dict[str, str],
    model: Path,
    extra: str = "",
    emit: str = "[detections]",
    source_extra: str = "",
) -> Path:
    """A pipeline file `folder/name.yaml` with one source per id in `uris`;
    `source_extra`: more keys of every source."""
    sources = "".join(
        f"  - {{id: {sid}, uri: '{uri}'{source_extra}}}\n" for sid, uri in uris.items()
    )
    return write_pipeline(
        folder / f"{name}.yaml",
        f"name: {name}\nevents: {{emit: {emit}}}\nsources:\n{sources}"
        f"model:\n  path: '{model}'\n{extra}",
    )


def one_source_pipeline(
    folder: Path,
    name: str,
    clip: Path,
    model: Path,
    source_extra: str = "",
    extra: str = "",
    emit: str = "[detections]",
) -> Path:
    """A pipeline file `folder/name.yaml` with one source `cam1` playing `clip`."""
    return write_pipeline(
        folder / f"{name}.yaml",
        f"name: {name}\nevents: {{emit: {emit}}}\n"
        f"sources:\n  - {{id: cam1, uri: '{clip}'{source_extra}}}\n"
        f"model:\n  path: '{model}'\n{extra}",
    )


def quick_events(client: redis.Redis, stream: str) -> list[dict[str, Any]]:
    """The stream's events, unchecked: for polling (read_events checks each one)."""
    return [json.loads(fields[b"event"]) for _id, fields in client.xrange(stream)]


def by_source(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event["source"], []).append(event)
    return out


def assert_seq_whole(events: list[dict[str, Any]]) -> None:
    """One run, seq 1, 2, 3, ... with no gap and no duplicate."""
    assert len({e["run"] for e in events}) == 1
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
