"""One definition of the event: every Event the factory can make is valid against the JSON
Schema of the contract, and reads back from its JSON as the same Event."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer import Direction, Event, EventType, SourceState
from streamer.analytics.rules import ObjectSnapshot, Occurrence
from streamer.events.event import (
    OBJECT_EVENT_TYPES,
    AlertState,
    CameraHealth,
    Drift,
    DriftFeature,
    HealthCondition,
    UnknownEventType,
)
from streamer.events.factory import EventFactory, new_ulid
from streamer.runtime.clock import FakeClock
from streamer.runtime.messages import Detections, Frame, HealthChange, SourceStatus
from tests.conftest import EVENT_VALIDATOR, SCHEMA
from tests.test_config_fuzz import fuzz

pytestmark = pytest.mark.timeout(60)

LABELS = ("person", "car", "bicycle")
coordinate = st.floats(0, 4000, allow_nan=False)
unit = st.floats(0, 1, allow_nan=False)
seconds = st.floats(0, 86_400, allow_nan=False)


def frame(index: int, pts: float | None, at: float) -> Frame:
    image = np.zeros((2, 2, 3), np.uint8)
    return Frame("cam1", index, pts, 0, at, None, image, 0.0)


@st.composite
def occurrences(draw: st.DrawFn) -> Occurrence:
    type_ = draw(st.sampled_from(OBJECT_EVENT_TYPES))
    x1, y1 = draw(coordinate), draw(coordinate)
    first = draw(st.floats(1.7e9, 1.8e9))
    snapshot = ObjectSnapshot(
        track_id=draw(st.integers(1, 10**6)),
        class_id=draw(st.integers(0, len(LABELS) - 1)),
        confidence=draw(unit),
        bbox=(x1, y1, x1 + draw(coordinate), y1 + draw(coordinate)),
        first_seen_at=first,
        last_seen_at=first + draw(seconds),
        dwell_s=draw(st.none() | seconds),
    )
    zone = draw(st.text(min_size=1, max_size=8)) if "zone" in type_ else None
    line, direction = None, None
    if type_ is EventType.LINE_CROSSED:
        line, direction = "gate", draw(st.sampled_from(Direction))
    pts = draw(st.none() | seconds)
    return Occurrence(type_, frame(draw(st.integers(0, 10**7)), pts, first), snapshot, zone,
                      line, direction)  # fmt: skip


def emitted_events(draw: st.DrawFn, factory: EventFactory) -> Event:
    kind = draw(st.sampled_from(["object", "detections", "status", "health", "drift"]))
    at = draw(st.floats(1.7e9, 1.8e9))
    state = draw(st.sampled_from(AlertState))
    if kind == "health":
        health = CameraHealth(draw(st.sampled_from(HealthCondition)), state,
                              draw(unit), draw(unit), at)  # fmt: skip
        change = HealthChange("cam1", health, frame(draw(st.integers(0, 10**7)), None, at))
        return factory.camera_health(change).event
    if kind == "drift":
        drift = Drift(draw(st.sampled_from(DriftFeature)), draw(unit), draw(unit), state,
                      at, at + draw(seconds))  # fmt: skip
        return factory.drift(frame(3, draw(st.none() | seconds), at), drift).event
    if kind == "object":
        return factory.occurrence(draw(occurrences())).event
    if kind == "detections":
        n = draw(st.integers(0, 5))
        xy = np.array(draw(st.lists(coordinate, min_size=2 * n, max_size=2 * n)), np.float32)
        boxes = np.concatenate([xy.reshape(n, 2), xy.reshape(n, 2) + 10], axis=1)
        detections = Detections(
            boxes.reshape(n, 4),
            np.array(draw(st.lists(unit, min_size=n, max_size=n)), np.float32),
            np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), np.int64),
        )
        ids = draw(st.lists(st.none() | st.integers(1, 99), min_size=n, max_size=n))
        return factory.detections(frame(3, 0.2, 1.75e9), detections, ids).event
    status = SourceStatus("cam1", draw(st.sampled_from(SourceState)), 1.75e9,
                          draw(st.none() | st.text(max_size=20)))  # fmt: skip
    return factory.source_status(status).event


@fuzz(200)
@given(st.data())
def test_every_event_is_valid_json_of_the_contract_and_reads_back_the_same(data):
    factory = EventFactory("p", new_ulid(), LABELS, FakeClock())
    event = emitted_events(data.draw, factory)
    as_json = json.loads(json.dumps(event.to_dict()))
    EVENT_VALIDATOR.validate(as_json)
    assert Event.from_dict(as_json) == event
    assert Event.from_dict(as_json, entry_id="1-0").entry_id == "1-0"


def test_the_schema_and_the_enums_name_the_same_values():
    properties = SCHEMA["properties"]
    assert properties["type"]["enum"] == [t.value for t in EventType]
    assert properties["status"]["enum"] == [s.value for s in SourceState]
    assert properties["direction"]["enum"] == [d.value for d in Direction] + [None]
    assert properties["health"]["properties"]["condition"]["enum"] == list(HealthCondition)
    assert properties["drift"]["properties"]["feature"]["enum"] == list(DriftFeature)
    assert SCHEMA["$defs"]["alert_state"]["enum"] == list(AlertState)


def test_an_event_of_an_unknown_type_is_told_apart():
    event = EventFactory("p", new_ulid(), LABELS).source_status(
        SourceStatus("cam1", SourceState.CONNECTED, 1.75e9)
    )
    data = {**event.event.to_dict(), "type": "speed_violation"}
    with pytest.raises(UnknownEventType, match="speed_violation"):
        Event.from_dict(data)


def test_enum_members_are_their_strings():
    assert EventType.LINE_CROSSED == "line_crossed"
    assert f"{SourceState.ENDED} {Direction.IN}" == "ended in"
