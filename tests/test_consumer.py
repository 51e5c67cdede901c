"""The consumer API and `streamer events tail` against a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import FrozenInstanceError
from typing import Any

import jsonschema
import numpy as np
import pytest

from streamer import (
    Consumer,
    Direction,
    Event,
    EventType,
    FrameRef,
    SourceState,
    TrackedObject,
)
from streamer.errors import StreamerError
from streamer.events.factory import EventFactory, new_ulid
from streamer.runtime.messages import Detections, SourceStatus
from streamer.sinks.redis_streams import stream_fields
from tests.conftest import EVENT_VALIDATOR, SCHEMA, run_cli
from tools.local_redis import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_follow_prints_new_events_as_they_come(redis_server, redis_client):
    factory = EventFactory("p", new_ulid(), ("person",))
    first = factory.source_status(SourceStatus("cam1", "connected", 1764322345.0))
    redis_client.xadd("streamer:p:events", stream_fields(first))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "events", "tail", "--redis-url", redis_server.url,
         "--follow", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["status"] == "connected"
        later = factory.source_status(SourceStatus("cam1", "ended", 1764322346.0, "eof"))
        redis_client.xadd("streamer:p:events", stream_fields(later))
        event = json.loads(proc.stdout.readline())
        assert (event["seq"], event["status"], event["detail"]) == (2, "ended", "eof")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_schema_is_a_json_schema_and_rejects_what_the_contract_forbids():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    factory = EventFactory("p", new_ulid(), ("person",))
    good = factory.source_status(SourceStatus("cam1", "connected", 1764322345.0)).event.to_dict()
    EVENT_VALIDATOR.validate(good)
    for broken in ({**good, "seq": 0}, {**good, "status": "sleeping"}, {**good, "id": "x"},
                   {k: v for k, v in good.items() if k != "run"}):  # fmt: skip
        with pytest.raises(jsonschema.ValidationError):
            EVENT_VALIDATOR.validate(broken)


T0 = 1764322345.0
STREAM = "streamer:p:events"


def add(client, payload: dict[str, Any]) -> str:
    """XADD one event as the sink writes it; its entry id."""
    fields = {"event": json.dumps(payload), "type": payload["type"], "source": payload["source"]}
    return client.xadd(STREAM, fields).decode()


def add_many(client, n: int) -> list[str]:
    factory = EventFactory("p", new_ulid(), ("person",))
    return [
        add(
            client, factory.source_status(SourceStatus("cam1", "connected", T0 + i)).event.to_dict()
        )
        for i in range(n)
    ]


def pending_ids(client, consumer: str | None = None) -> list[str]:
    rows = client.xpending_range(STREAM, "g", "-", "+", 10_000, consumername=consumer)
    return [row["message_id"].decode() for row in rows]


def object_event(factory: EventFactory, type_: str, obj: dict[str, Any], **extra: Any) -> dict:
    """An event of a type EventFactory does not build here, checked against the schema."""
    payload = factory.source_status(SourceStatus("cam1", "connected", T0)).event.to_dict()
    del payload["status"]
    frame = {"index": 7, "pts": 0.28, "captured_at": T0}
    payload.update(type=type_, frame=frame, object=obj, **extra)
    EVENT_VALIDATOR.validate(payload)
    return payload


def test_every_event_type_is_read_as_typed_objects(redis_client):
    factory = EventFactory("p", new_ulid(), ("person", "car"))
    car = {"track_id": 17, "label": "car", "class_id": 1, "confidence": 0.87,
           "bbox": [412.0, 80.5, 530.2, 161.0]}  # fmt: skip
    left = {**car, "first_seen": T0 - 9.5, "last_seen": T0, "dwell_s": 9.5}
    boxes = Detections(
        np.array([[1, 2, 3, 4], [10, 20, 30, 40]], np.float32),
        np.array([0.9, 0.5], np.float32),
        np.array([0, 1], np.int64),
    )
    status = factory.source_status(
        SourceStatus("cam1", "disconnected", T0, "timeout")
    ).event.to_dict()
    detections = factory.source_status(SourceStatus("cam1", "connected", T0)).event.to_dict()
    del detections["status"]
    frame = {"index": 7, "pts": 0.28, "captured_at": T0}
    detections.update(
        type="detections", frame=frame, objects=[o.to_dict() for o in factory.boxes(boxes)]
    )
    payloads = [
        status,
        detections,
        object_event(factory, "object_appeared", car),
        object_event(factory, "object_left", left),
        object_event(factory, "zone_entered", car, zone="gate"),
        object_event(factory, "zone_exited", car, zone="gate"),
        object_event(factory, "line_crossed", car, line="door", direction="in"),
        # Keys a later version may add do not break this one.
        object_event(factory, "object_appeared", {**car, "speed": 3.0}, future={"x": 1}),
    ]
    for payload in payloads:
        EVENT_VALIDATOR.validate(payload)
    ids = [add(redis_client, p) for p in payloads]

    events = list(Consumer(redis_client, STREAM).events())
    assert [e.entry_id for e in events] == ids
    # Read back, each event gives the JSON it was written from (less what it does not know).
    assert [e.to_dict() for e in events[:-1]] == payloads[:-1]
    assert [e.seq for e in events] == list(range(1, len(payloads) + 1))
    status, boxed, appeared, left_, entered, exited, crossed, future = events
    assert all(isinstance(e, Event) for e in events)
    assert (status.type, status.status, status.detail, status.frame) == (
        EventType.SOURCE_STATUS, SourceState.DISCONNECTED, "timeout", None)  # fmt: skip
    assert status.type is EventType.SOURCE_STATUS and status.status is SourceState.DISCONNECTED
    assert (status.object, status.objects, status.pipeline, status.source) == (
        None,
        (),
        "p",
        "cam1",
    )
    assert boxed.frame == FrameRef(7, 0.28, T0)
    assert boxed.object is None
    assert [(o.label, o.class_id, o.track_id, o.bbox) for o in boxed.objects] == [
        ("person", 0, None, (1.0, 2.0, 3.0, 4.0)),
        ("car", 1, None, (10.0, 20.0, 30.0, 40.0)),
    ]
    assert appeared.object == TrackedObject(17, "car", 1, 0.87, (412.0, 80.5, 530.2, 161.0))
    assert appeared.objects == ()
    assert left_.object is not None
    assert (left_.object.first_seen, left_.object.last_seen, left_.object.dwell_s) == (
        T0 - 9.5, T0, 9.5)  # fmt: skip
    assert (entered.type, entered.zone, exited.type, exited.zone) == (
        "zone_entered", "gate", "zone_exited", "gate")  # fmt: skip
    assert (crossed.line, crossed.direction, crossed.zone) == ("door", Direction.IN, None)
    assert future.object == appeared.object
    assert "future" not in future.to_dict()
    with pytest.raises(FrozenInstanceError):
        crossed.direction = "out"  # type: ignore[misc]


def test_a_plain_reader_starts_where_it_is_told(redis_client):
    ids = add_many(redis_client, 5)
    assert [e.entry_id for e in Consumer(redis_client, STREAM).events()] == ids
    assert [e.entry_id for e in Consumer(redis_client, STREAM, start=2).events()] == ids[3:]
    assert [e.entry_id for e in Consumer(redis_client, STREAM, start=ids[1]).events()] == ids[2:]
    assert [e.entry_id for e in Consumer(redis_client, STREAM).events(limit=2)] == ids[:2]
    new_only = Consumer(redis_client, STREAM, start="$")
    assert list(new_only.events()) == []
    later = add_many(redis_client, 2)
    assert [e.entry_id for e in new_only.events(follow=True, limit=2)] == later


def test_a_group_reads_each_event_once_and_acknowledged_events_are_not_pending(
    redis_server, redis_client
):
    ids = add_many(redis_client, 5)
    with Consumer.connect(redis_server.url, STREAM, group="g", name="w1") as w1:
        first = list(w1.events(limit=3))
        assert [e.entry_id for e in first] == ids[:3]
        assert pending_ids(redis_client, "w1") == ids[:3]
        assert w1.ack(*first) == 3
        w2 = Consumer(redis_client, STREAM, group="g", name="w2")
        rest = []
        for event in w2.events():
            rest.append(event.entry_id)
            w2.ack(event)
        assert rest == ids[3:]
    assert redis_client.xpending(STREAM, "g")["pending"] == 0
    assert redis_client.xinfo_groups(STREAM)[0]["last-delivered-id"].decode() == ids[-1]


def test_auto_ack_acknowledges_each_event_when_the_next_is_asked_for(redis_client):
    ids = add_many(redis_client, 4)
    consumer = Consumer(redis_client, STREAM, group="g", name="w1", auto_ack=True)
    events = consumer.events()
    assert next(events).entry_id == ids[0]
    assert pending_ids(redis_client) == ids  # read in one batch, none handled yet
    assert next(events).entry_id == ids[1]
    assert pending_ids(redis_client) == ids[1:]
    assert [e.entry_id for e in events] == ids[2:]
    assert pending_ids(redis_client) == []
    # With a limit, the last one is acknowledged too and nothing more is read.
    more = add_many(redis_client, 3)
    assert [e.entry_id for e in consumer.events(limit=2)] == more[:2]
    assert pending_ids(redis_client) == []
    assert [e.entry_id for e in consumer.events()] == more[2:]


def test_another_consumer_claims_exactly_what_a_dead_one_left_pending(redis_client):
    # More than one XAUTOCLAIM batch, so that its cursor has to be followed.
    ids = add_many(redis_client, 250)
    dead = Consumer(redis_client, STREAM, group="g", name="dead")
    left = [e.entry_id for e in dead.events(limit=230)]
    acked = Consumer(redis_client, STREAM, group="g", name="w1")
    acked.ack(*acked.events(limit=10))  # another, live, one with nothing pending
    assert pending_ids(redis_client, "dead") == left == ids[:230]
    time.sleep(0.05)

    heir = Consumer(redis_client, STREAM, group="g", name="heir")
    assert heir.claim_stale(min_idle_ms=60_000) == []  # not idle that long yet
    claimed = heir.claim_stale(min_idle_ms=20)
    assert [e.entry_id for e in claimed] == left
    assert pending_ids(redis_client, "heir") == left
    assert pending_ids(redis_client, "dead") == []
    assert heir.ack(*claimed) == 230
    assert heir.claim_stale(min_idle_ms=0) == []
    assert [e.entry_id for e in heir.events()] == ids[240:]


def test_events_can_claim_stale_entries_as_they_go(redis_client):
    ids = add_many(redis_client, 5)
    dead = Consumer(redis_client, STREAM, group="g", name="dead")
    assert len(list(dead.events(limit=2))) == 2
    time.sleep(0.05)
    heir = Consumer(redis_client, STREAM, group="g", name="heir", auto_ack=True)
    got = [e.entry_id for e in heir.events(claim_idle_ms=20)]
    assert got == ids  # the claimed ones first, then the ones nobody had read
    assert redis_client.xpending(STREAM, "g")["pending"] == 0


def test_a_restarted_consumer_gets_its_own_pending_entries_first(redis_client):
    ids = add_many(redis_client, 5)
    before = Consumer(redis_client, STREAM, group="g", name="w1")
    assert [e.entry_id for e in before.events(limit=2)] == ids[:2]  # then it stops, unacked
    other = Consumer(redis_client, STREAM, group="g", name="w2")
    assert [e.entry_id for e in other.events(limit=1)] == ids[2:3]

    after = Consumer(redis_client, STREAM, group="g", name="w1", auto_ack=True)
    assert [e.entry_id for e in after.events()] == ids[:2] + ids[3:]
    assert pending_ids(redis_client) == ids[2:3]  # w2's, not w1's to take


def test_pending_entries_trimmed_away_are_skipped_and_no_longer_pending(redis_client):
    ids = add_many(redis_client, 6)
    w1 = Consumer(redis_client, STREAM, group="g", name="w1")
    assert len(list(w1.events())) == 6
    redis_client.xtrim(STREAM, maxlen=2, approximate=False)  # as MAXLEN does under load
    restarted = Consumer(redis_client, STREAM, group="g", name="w1", auto_ack=True)
    assert [e.entry_id for e in restarted.events()] == ids[4:]
    assert pending_ids(redis_client) == []

    more = add_many(redis_client, 4)
    dead = Consumer(redis_client, STREAM, group="g", name="dead")
    assert len(list(dead.events())) == 4
    redis_client.xtrim(STREAM, maxlen=1, approximate=False)
    heir = Consumer(redis_client, STREAM, group="g", name="heir")
    assert [e.entry_id for e in heir.claim_stale(min_idle_ms=0)] == more[3:]
    assert pending_ids(redis_client) == more[3:]


def test_events_of_a_type_this_version_does_not_know_are_skipped(redis_client):
    factory = EventFactory("p", new_ulid(), ("person",))
    known = factory.source_status(SourceStatus("cam1", SourceState.CONNECTED, T0)).event.to_dict()
    newer = {**known, "type": "speed_violation", "seq": 2, "speed": {"kmh": 71}}
    ids = [add(redis_client, known), add(redis_client, newer), add_many(redis_client, 1)[0]]
    assert [e.entry_id for e in Consumer(redis_client, STREAM).events()] == [ids[0], ids[2]]
    group = Consumer(redis_client, STREAM, group="g", name="w1", auto_ack=True)
    assert [e.entry_id for e in group.events()] == [ids[0], ids[2]]
    assert pending_ids(redis_client) == []  # the skipped one too: it can never be handled


def test_an_entry_without_an_event_is_an_error_naming_it(redis_client):
    bad = redis_client.xadd(STREAM, {"type": "source_status"}).decode()
    with pytest.raises(StreamerError, match=f"stream entry {bad} has no 'event' field"):
        list(Consumer(redis_client, STREAM).events())
    with pytest.raises(StreamerError, match=f"stream entry {bad} has no 'event' field"):
        list(Consumer(redis_client, STREAM, group="g", name="w1").events())
    redis_client.delete(STREAM)
    for broken in ("not json", "[1, 2]", json.dumps({"schema": 1})):
        bad = redis_client.xadd(STREAM, {"event": broken}).decode()
        with pytest.raises(StreamerError, match=f"stream entry {bad} is not a streamer event"):
            list(Consumer(redis_client, STREAM, start=1).events())


def test_unreachable_redis_is_one_error_without_the_password():
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(StreamerError) as caught:
        Consumer.connect(url, stream=STREAM, group="g", name="w1")
    message = str(caught.value)
    assert message.startswith("redis://user:***@127.0.0.1:")
    assert "Redis unreachable" in message
    assert "s3cret" not in message
    assert "\n" not in message

    result = run_cli("events", "tail", "--redis-url", url)
    assert result.returncode == 2
    assert result.stderr.startswith("streamer: error: redis://user:***@127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1
    assert "s3cret" not in result.stderr + result.stdout


def test_tail_with_a_group_claims_what_a_dead_consumer_left(redis_server, redis_client):
    ids = add_many(redis_client, 4)
    dead = Consumer(redis_client, STREAM, group="g", name="dead")
    assert len(list(dead.events(limit=2))) == 2
    args = ("events", "tail", "--redis-url", redis_server.url, "--group", "g", "--json")
    result = run_cli(*args, "--consumer", "c2", "--claim-idle-ms", "0")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [1, 2, 3, 4]
    assert redis_client.xpending(STREAM, "g")["pending"] == 0
    assert len(ids) == 4

    no_group = run_cli("events", "tail", "--redis-url", redis_server.url, "--claim-idle-ms", "0")
    assert no_group.returncode == 2
    assert "--claim-idle-ms needs --group" in no_group.stderr


def test_the_api_is_exported_from_the_package():
    import streamer

    assert (streamer.Consumer, streamer.Event) == (Consumer, Event)
    assert (streamer.TrackedObject, streamer.FrameRef) == (TrackedObject, FrameRef)


def test_tail_lines_show_the_video_time_and_why_an_object_left(redis_server, redis_client):
    factory = EventFactory("p", new_ulid(), ("person",))
    obj = {"track_id": 3, "label": "person", "class_id": 0, "confidence": 0.9,
           "bbox": [1.0, 2.0, 30.0, 60.0], "first_seen": T0, "last_seen": T0 + 4,
           "dwell_s": 4.0}  # fmt: skip
    left = object_event(factory, "object_left", obj, reason="lost")
    left["frame"] = {"index": 1851, "pts": 3725.4, "captured_at": T0 + 5}
    add(redis_client, left)
    result = run_cli("events", "tail", "--redis-url", redis_server.url)
    assert result.returncode == 0, result.stderr
    assert "(video 1:02:05.4) cam1 #1 object_left person #3 4.0 s lost [1, 2, 30, 60]" in (
        result.stdout
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [(("--count", "99999999999999999999"), "--count"),
     (("--group", "g", "--claim-idle-ms", "99999999999999999999"), "--claim-idle-ms"),
     (("--consumer", "c1"), "--consumer needs --group")],
)  # fmt: skip
def test_tail_answers_bad_numbers_and_a_consumer_without_a_group_as_usage(redis_server, args, says):
    result = run_cli("events", "tail", "--redis-url", redis_server.url, *args)
    assert result.returncode == 2
    assert says in result.stderr and "Traceback" not in result.stderr
