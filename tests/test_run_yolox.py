"""`streamer run` end to end: the real person clip, the real YOLOX-nano model, a real Redis.

The whole clip (1394 frames) runs once for the module; each test checks one promise.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from tests.conftest import REPO, read_events, run_cli, run_with_stats

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STREAM = "streamer:demo:events"
CLIP_FRAMES = 1394
CLIP_HW = (432, 768)
# Frame ranges checked by eye on a contact sheet of the clip (every 25th frame).
PERSON_VISIBLE = [(100, 175), (275, 400), (550, 650), (1000, 1150), (1275, 1325)]
NOBODY = [(0, 50), (460, 500), (1210, 1225)]


@pytest.fixture(scope="module")
def yolox_run(tmp_path_factory, redis_server, person_clip, yolox_nano) -> dict[str, Any]:
    """The demo pipeline pointed at the person clip and YOLOX-nano from the command line."""
    tmp = tmp_path_factory.mktemp("yolox")
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()  # `events tail` without --stream finds the only stream
    result, stats = run_with_stats(
        REPO / "pipelines" / "demo.yaml", redis_server.url,
        "--source", str(person_clip), "--model", str(yolox_nano),
        stats_file=tmp / "stats.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = read_events(client, STREAM)
    client.close()
    return {"stats": stats, "events": events, "stderr": result.stderr}


def detections_by_frame(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    return {e["frame"]["index"]: e["objects"] for e in events if e["type"] == "detections"}


def test_every_frame_of_the_file_is_processed_offline(yolox_run):
    stats = yolox_run["stats"]
    assert stats["frames"] == {
        "decoded": CLIP_FRAMES, "processed": CLIP_FRAMES, "still": 0, "late": 0, "dropped": {},
    }  # fmt: skip
    assert sorted(detections_by_frame(yolox_run["events"])) == list(range(CLIP_FRAMES))


def test_every_event_is_delivered_and_counted(yolox_run):
    stats, events = yolox_run["stats"], yolox_run["events"]
    assert stats["events"] == {"emitted": len(events), "delivered": len(events), "lost": 0}
    assert len(events) == CLIP_FRAMES + 2  # a detections event per frame, connected, ended
    assert list(stats["sources"]) == ["parking"]
    assert stats["sources"]["parking"]["frames"] == CLIP_FRAMES
    assert stats["providers"][-1] == "CPUExecutionProvider"
    assert (
        0 < stats["latency_ms"]["p50"] <= stats["latency_ms"]["p99"] <= stats["latency_ms"]["max"]
    )


def test_events_are_in_order_with_gap_free_seq_and_status_at_both_ends(yolox_run):
    events = yolox_run["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["id"] for e in events}) == len(events)
    assert len({e["run"] for e in events}) == 1
    assert (events[0]["type"], events[0]["status"]) == ("source_status", "connected")
    assert (events[-1]["type"], events[-1]["status"], events[-1]["detail"]) == (
        "source_status",
        "ended",
        "eof",
    )
    indices = [e["frame"]["index"] for e in events if e["type"] == "detections"]
    assert indices == sorted(indices)
    pts = [e["frame"]["pts"] for e in events if e["type"] == "detections"]
    assert pts[:3] == pytest.approx([0.0, 0.1, 0.2])


def test_a_person_is_found_where_one_is_visible_and_not_where_nobody_is(yolox_run):
    by_frame = detections_by_frame(yolox_run["events"])

    def has_person(index: int) -> bool:
        return any(o["label"] == "person" and o["confidence"] >= 0.5 for o in by_frame[index])

    visible = [i for a, b in PERSON_VISIBLE for i in range(a, b + 1)]
    empty = [i for a, b in NOBODY for i in range(a, b + 1)]
    found = sum(map(has_person, visible)) / len(visible)
    false = sum(map(has_person, empty)) / len(empty)
    assert found >= 0.9, f"a person found in only {found:.0%} of the frames where one is visible"
    assert false <= 0.1, f"a person reported in {false:.0%} of the frames where nobody is"
    best = max(o["confidence"] for i in visible for o in by_frame[i] if o["label"] == "person")
    assert best >= 0.85


def test_boxes_are_in_source_pixels(yolox_run):
    h, w = CLIP_HW
    people = [
        o
        for objs in detections_by_frame(yolox_run["events"]).values()
        for o in objs
        if o["label"] == "person"
    ]
    assert people
    for o in people:
        x1, y1, x2, y2 = o["bbox"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    # People stand on the floor: in this clip their boxes reach the lower part of the frame,
    # which a box left in model-input pixels (416 x 234 of content) could never do.
    assert max(o["bbox"][3] for o in people) > 300


def test_the_provider_in_use_is_logged_once(yolox_run):
    assert yolox_run["stderr"].count("provider CPUExecutionProvider") == 1
    assert "Traceback" not in yolox_run["stderr"]
    assert "EP Error" not in yolox_run["stderr"]


def test_tail_reads_events_back(redis_server, yolox_run):
    result = run_cli("events", "tail", "--redis-url", redis_server.url, "--count", "3", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["seq"] for e in lines] == [CLIP_FRAMES, CLIP_FRAMES + 1, CLIP_FRAMES + 2]
    human = run_cli("events", "tail", "--redis-url", redis_server.url, "--count", "1")
    assert "parking #1396 source_status ended (eof)" in human.stdout


def test_tail_with_a_consumer_group_acknowledges_what_it_read(redis_server, yolox_run):
    args = [
        "events",
        "tail",
        "--redis-url",
        redis_server.url,
        "--stream",
        STREAM,
        "--group",
        "g1",
        "--consumer",
        "c1",
        "--json",
    ]
    first = run_cli(*args, "--count", "10")
    assert [json.loads(x)["seq"] for x in first.stdout.splitlines()] == list(range(1, 11))
    rest = run_cli(*args)
    assert len(rest.stdout.splitlines()) == len(yolox_run["events"]) - 10
    client = redis.Redis.from_url(redis_server.url)
    assert client.xpending(STREAM, "g1")["pending"] == 0
    client.close()
    assert run_cli(*args).stdout == ""


def test_inspect_names_the_family_and_labels(yolox_nano):
    result = run_cli("inspect", str(yolox_nano))
    assert result.returncode == 0, result.stderr
    assert "family: yolox" in result.stdout
    assert "input size: 416x416" in result.stdout
    assert "BGR, 0..255, top-left letterbox" in result.stdout
    assert "labels (80): person, bicycle, car" in result.stdout


def test_inspect_an_ultralytics_export(yolov8n):
    result = run_cli("inspect", str(yolov8n))
    assert result.returncode == 0, result.stderr
    assert "family: yolov8" in result.stdout
    assert "dynamic (long side 640, multiple of 32)" in result.stdout
