"""A running pipeline's stats, published in Redis for `streamer status` to read.

Every `PUBLISH_EVERY_S` the stats document (with, for a sharded run, which shard runs
which camera on which host) is written to `streamer:{pipeline}:status`, expiring after
`EXPIRE_S`: a key that is gone means no run has published for that long. Best effort:
the status is no event, and a Redis that cannot take it now gets the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis

from streamer.client.connection import RedisClient, connect

log = logging.getLogger(__name__)

PUBLISH_EVERY_S = 2.0
EXPIRE_S = 10


def status_key(pipeline: str) -> str:
    return f"streamer:{pipeline}:status"


class StatusPublisher:
    """Publishes `snapshot()` for pipeline `name` from a thread until `close`."""

    def __init__(self, url: str, name: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._client: RedisClient = connect(url)
        self._key = status_key(name)
        self._name = name
        self._snapshot = snapshot
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamer.status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_EVERY_S):
            self.publish()

    def publish(self) -> None:
        doc = {"pipeline": self._name, "published_at": round(time.time(), 3), **self._snapshot()}
        try:
            self._client.set(self._key, orjson.dumps(doc), ex=EXPIRE_S)
        except redis.RedisError as exc:
            log.debug("status not published: %s", exc)

    def close(self) -> None:
        """Stop, and publish the final stats once more."""
        self._stop.set()
        self._thread.join()
        self.publish()
        self._client.close()


def read_status(client: RedisClient, name: str) -> dict[str, Any] | None:
    """The last status pipeline `name` published; None when none is there (any more)."""
    raw: Any = client.get(status_key(name))
    return None if raw is None else dict(orjson.loads(raw))
