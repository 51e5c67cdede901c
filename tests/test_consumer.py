"""`streamer events tail --follow` against a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamer.events import EventFactory, new_ulid
from streamer.messages import SourceStatus
from streamer.sink import stream_fields
from tests.conftest import SCHEMA

pytestmark = pytest.mark.integration


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


def test_the_schema_rejects_what_the_contract_forbids():
    jsonschema = pytest.importorskip("jsonschema")
    factory = EventFactory("p", new_ulid(), ("person",))
    good = factory.source_status(SourceStatus("cam1", "connected", 1764322345.0)).payload
    jsonschema.validate(good, SCHEMA)
    for broken in ({**good, "seq": 0}, {**good, "status": "sleeping"}, {**good, "id": "x"},
                   {k: v for k, v in good.items() if k != "run"}):  # fmt: skip
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)
