"""One way to connect to Redis, for the sink and the consumer alike.

`connect` makes a client, checks it with PING, and names the URL (never its password)
when Redis cannot be used. Three kinds of Redis, told apart by the URL and the server:

- a single server: `redis://` (or `rediss://` for TLS, `unix://`);
- a Redis Cluster: the same URL, to any of its nodes; the server says it is one (INFO
  cluster), and the client then follows the cluster's slots;
- a master watched by Sentinels: `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT
  ...]/SERVICE[/DB]`: the Sentinels are asked where the master of SERVICE is, again after
  a failover; the password is the master's.

Nothing is retried inside redis-py: a write sent again after a timeout could be written
twice, so the sink retries itself, knowing what it sent, and a consumer's reads are
retried by its caller.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from streamer.errors import RedisUnavailable
from streamer.observability.redact import redact

# A consumer's blocking reads wait up to a second (consumer.BLOCK_MS); the sink's writes
# take milliseconds. A socket that says nothing for this long belongs to a Redis that hangs.
SOCKET_TIMEOUT_S = 10.0
SENTINEL_SCHEME = "redis+sentinel"

RedisClient = redis.Redis | redis.RedisCluster


def connection_failure(url: str, exc: Exception) -> str:
    """One line for a Redis that could not be used at `url`, without its password."""
    # A wrong password is no network problem: say which (redis-py's message has no secret).
    if isinstance(exc, (ValueError, IndexError)):
        return f"{redact(url)}: not a Redis URL this can use ({redact(str(exc))})"
    what = "refused the login" if isinstance(exc, redis.AuthenticationError) else "unreachable"
    return f"{redact(url)}: Redis {what} ({redact(str(exc))})"


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, redis.RedisCluster)


def connect(url: str, *, socket_timeout_s: float = SOCKET_TIMEOUT_S) -> RedisClient:
    """A client for `url`, checked with PING; RedisUnavailable naming the URL when it
    cannot be used."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
    }
    try:
        if urlsplit(url).scheme == SENTINEL_SCHEME:
            client: RedisClient = _sentinel_master(url, options)
        else:
            client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
            client.ping()
            if client.info("cluster").get("cluster_enabled"):
                client.close()
                client = redis.RedisCluster.from_url(url, **options)
        client.ping()
    except (redis.RedisError, ValueError, IndexError) as exc:
        unreachable = isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) and not (
            isinstance(exc, redis.AuthenticationError)
        )
        raise RedisUnavailable(connection_failure(url, exc), unreachable=unreachable) from None
    return client


def _sentinel_master(url: str, options: dict[str, Any]) -> redis.Redis:
    """The master a `redis+sentinel://` URL names, found through its Sentinels."""
    parts = urlsplit(url)
    hosts_part = parts.netloc.rpartition("@")[2]
    sentinels = []
    for host_port in hosts_part.split(","):
        host, _, port = host_port.rpartition(":")
        sentinels.append((host or "localhost", int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("no service name: redis+sentinel://HOST:PORT/SERVICE[/DB]")
    service, db = path[0], int(path[1]) if len(path) > 1 else 0
    sentinel = Sentinel(sentinels, **options)  # type: ignore[no-untyped-call]
    master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        service,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        retry=Retry(NoBackoff(), 0),
        **options,
    )
    return master
