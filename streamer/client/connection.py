"""One way to connect to Redis, for the sink and the consumer alike.

`connect` makes a client, checks it with PING, and names the URL (never its password)
when Redis cannot be used. Nothing is retried inside redis-py: a write sent again after
a timeout could be written twice, so the sink retries itself, knowing what it sent, and
a consumer's reads are retried by its caller.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamer.errors import RedisUnavailable
from streamer.observability.redact import redact

# A consumer's blocking reads wait up to a second (consumer.BLOCK_MS); the sink's writes
# take milliseconds. A socket that says nothing for this long belongs to a Redis that hangs.
SOCKET_TIMEOUT_S = 10.0


def connection_failure(url: str, exc: Exception) -> str:
    """One line for a Redis that could not be used at `url`, without its password."""
    # A wrong password is no network problem: say which (redis-py's message has no secret).
    what = "refused the login" if isinstance(exc, redis.AuthenticationError) else "unreachable"
    return f"{redact(url)}: Redis {what} ({redact(str(exc))})"


def connect(url: str, *, socket_timeout_s: float = SOCKET_TIMEOUT_S) -> redis.Redis:
    """A client for `url`, checked with PING; RedisUnavailable naming the URL when it
    cannot be used."""
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise RedisUnavailable(connection_failure(url, exc)) from None
    return client
