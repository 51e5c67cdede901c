"""Sources that fail or cannot be reached: each ends or retries alone; the others go on."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.config import SourceConfig
from streamer.decode import SourcePlan, VideoSource
from streamer.messages import DropReason, EndOfStream, SourceStatus
from streamer.queues import Overflow, StageQueue
from streamer.runtime import Supervisor
from streamer.stats import RunStats
from tests.conftest import read_events, run_with_stats, write_pipeline
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


def test_an_unreachable_camera_is_retried_while_a_file_goes_on(
    tmp_path, redis_client, redis_server, person_clip, yolox_nano
):
    camera = f"rtsp://viewer:s3cret@127.0.0.1:{free_port()}/stream1"
    pipeline = write_pipeline(
        tmp_path / "mixed.yaml",
        f"name: mixed\nsources:\n  - {{id: file, uri: '{person_clip}'}}\n"
        f"  - {{id: door, uri: '{camera}'}}\nmodel:\n  path: '{yolox_nano}'\n",
    )
    result, stats = run_with_stats(pipeline, redis_server.url, "--duration", "3")
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stderr
    assert "rtsp://viewer:***@127.0.0.1" in result.stderr
    assert stats["sources"]["door"]["frames"] == 0
    assert stats["sources"]["door"]["reconnects"] >= 2
    assert stats["sources"]["file"]["frames"] >= 20  # paced at 10 fps beside a live source
    events = read_events(redis_client, "streamer:mixed:events")
    door = [e.get("status") for e in events if e["source"] == "door"]
    assert door[:3] == ["disconnected", "reconnecting", "disconnected"]
    assert door[-1] == "ended"
    assert any(e["type"] == "detections" for e in events if e["source"] == "file")


def test_drop_reasons_are_named():
    assert {r.value for r in DropReason} == {"queue_full", "deadline", "decode_error", "shutdown"}
