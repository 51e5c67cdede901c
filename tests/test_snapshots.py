"""Events that carry a picture of their frame (`events.snapshots`), in Redis and on disk."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer import Consumer, Event, EventType, Pipeline
from tests.conftest import DEMO_CONFIDENCE, read_events, run_cli, write_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PICTURED = {"object_appeared", "line_crossed", "zone_entered"}


def snapshots_pipeline(folder: Path, clip: Path, model: Path, snapshots: str) -> Path:
    return write_pipeline(
        folder / "snaps.yaml",
        f"name: snaps\nsources:\n  - {{id: lot, uri: '{clip}'}}\n"
        f"model:\n  path: '{model}'\n{DEMO_CONFIDENCE}"
        "events:\n  emit: [object_appeared, object_left, zone_entered, zone_exited, line_crossed]\n"
        f"  snapshots: {snapshots}\n"
        "zones:\n  - {name: corner, polygon: [[-40, 200], [300, 200], [300, 400], [-40, 400]]}\n"
        "lines:\n  - {name: midline, points: [[300, 0], [300, 360]]}\n",
    )


def jpeg_shape(data: bytes) -> tuple[int, ...]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return tuple(image.shape)


def test_object_events_name_a_picture_of_their_frame_in_redis(
    tmp_path, redis_server, redis_client, demo_clip, demo_model
):
    path = snapshots_pipeline(tmp_path, demo_clip, demo_model, "{ttl_s: 600}")
    result = run_cli("run", str(path), "--redis-url", redis_server.url)
    assert result.returncode == 0, result.stderr
    events = read_events(redis_client, "streamer:snaps:events")  # checked against the schema
    pictured = [e for e in events if e["type"] in PICTURED]
    assert pictured and all(e["snapshot"].startswith("streamer:snaps:snapshot:") for e in pictured)
    assert not [e for e in events if e["type"] not in PICTURED and "snapshot" in e]
    keys = {e["snapshot"] for e in pictured}
    assert len(keys) <= len(pictured)  # events of one frame share its picture
    for key in keys:
        assert jpeg_shape(redis_client.get(key)) == (360, 640, 3)  # the source's size
        assert 590 <= redis_client.ttl(key) <= 600  # its own trimming
    consumer = Consumer(redis_client, "streamer:snaps:events")
    first = next(e for e in consumer.events() if e.type is EventType.OBJECT_APPEARED)
    assert consumer.snapshot(first) == redis_client.get(first.snapshot)


def test_pictures_on_disk_without_redis(tmp_path, demo_clip, demo_model):
    path = snapshots_pipeline(tmp_path, demo_clip, demo_model, "{store: disk, folder: pics}")
    events: list[Event] = []
    Pipeline.from_file(path, redis_url=None, on_event=events.append).run()
    pictured = [e for e in events if e.type.value in PICTURED]
    assert pictured and all(e.snapshot is not None for e in pictured)
    files = {Path(e.snapshot) for e in pictured if e.snapshot is not None}
    assert all(f.parent == tmp_path / "pics" / "snaps" / "lot" for f in files)
    assert all(jpeg_shape(f.read_bytes()) == (360, 640, 3) for f in files)
    assert not list((tmp_path / "pics").rglob("*.part"))


def test_pictures_in_redis_need_a_redis_sink(tmp_path, demo_clip, demo_model):
    path = snapshots_pipeline(tmp_path, demo_clip, demo_model, "true")
    path.write_text(path.read_text() + "sink: none\n")
    result = run_cli("run", str(path))
    assert result.returncode == 2
    assert "events.snapshots: store: redis needs the pipeline's Redis sink" in result.stderr
