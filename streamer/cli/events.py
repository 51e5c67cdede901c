"""`streamer events tail`: a stream's events, one line each, read with the consumer API."""

from __future__ import annotations

import json
import sys
import time

import click
import redis

from streamer.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, fail_usage, say_error
from streamer.cli.options import redis_url_option
from streamer.client.connection import RedisClient, connect
from streamer.client.consumer import Consumer, find_streams
from streamer.client.streams import StreamsConsumer, is_pattern
from streamer.errors import StreamerError
from streamer.events.event import Event, EventType

DEFAULT_CONSUMER = "streamer-cli"
MAX_COUNT = 10**9  # more than any stream holds; Redis refuses counts beyond 64 bits
MAX_IDLE_MS = 10**12  # 31 years


@click.group()
def events() -> None:
    """Read events from Redis."""


@events.command("tail")
@redis_url_option
@click.option(
    "--stream",
    "streams",
    multiple=True,
    help="Stream key, or a pattern such as 'streamer:site:*' (repeatable) "
    "[default: the only streamer:* stream].",
)
@click.option(
    "--count",
    type=click.IntRange(0, MAX_COUNT),
    help="Show the last N events (or N new ones).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events.")
@click.option("--group", help="Read as this consumer group (acknowledging each event).")
@click.option(
    "--consumer",
    "consumer_name",
    help=f"Consumer name within --group [default: {DEFAULT_CONSUMER}].",
)
@click.option(
    "--claim-idle-ms",
    type=click.IntRange(0, MAX_IDLE_MS),
    help="With --group, also take over events other consumers left pending this long.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each event's JSON on one line.")
def events_tail(
    redis_url: str,
    streams: tuple[str, ...],
    count: int | None,
    follow: bool,
    group: str | None,
    consumer_name: str | None,
    claim_idle_ms: int | None,
    as_json: bool,
) -> None:
    """Print events from a stream (or several): the last ones, then new ones with --follow."""
    if claim_idle_ms is not None and not group:
        fail_usage("--claim-idle-ms needs --group")
    if consumer_name is not None and not group:
        fail_usage("--consumer needs --group (a consumer is a member of a group)")
    consumer_name = consumer_name or DEFAULT_CONSUMER
    try:
        client = connect(redis_url)
        keys = list(streams) or [_only_stream(client)]
        reader: Consumer | StreamsConsumer
        if group:
            # --count is how many to take: the group hands out new events, not the last N.
            if len(keys) == 1 and not is_pattern(keys[0]):
                reader = Consumer(client, keys[0], group, consumer_name, auto_ack=True)
            else:
                reader = StreamsConsumer(client, keys, group, consumer_name, auto_ack=True)
            read = reader.events(follow=follow, limit=count, claim_idle_ms=claim_idle_ms)
        else:
            start = "0" if count is None else count
            if len(keys) == 1 and not is_pattern(keys[0]):
                reader = Consumer(client, keys[0], start=start)
            else:
                reader = StreamsConsumer(client, keys, start=start)
                if not reader.streams:
                    raise StreamerError(f"no stream matches {', '.join(keys)}")
            read = reader.events(follow=follow)
        for event in read:
            click.echo(json.dumps(event.to_dict()) if as_json else _one_line(event))
    except StreamerError as exc:
        fail_usage(str(exc))
    except redis.RedisError as exc:
        say_error(f"{redis_url}: {exc}")
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _only_stream(client: RedisClient) -> str:
    streams = find_streams(client)
    if len(streams) == 1:
        return streams[0]
    if not streams:
        raise StreamerError("no streamer:* stream in this Redis yet; name one with --stream")
    raise StreamerError(f"several streams, choose one with --stream: {', '.join(streams)}")


def _video_time(pts: float) -> str:
    """A position in a video as a player shows it: 1:02.3, or 1:02:03.4."""
    minutes, seconds = divmod(max(0.0, pts), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{seconds:04.1f}" if hours else f"{minutes}:{seconds:04.1f}"


def _one_line(event: Event) -> str:
    """The wall time the event was made, and where it is in the video (of a file: the
    position to seek to; of a camera: its stream time)."""
    when = time.strftime("%H:%M:%S", time.localtime(event.emitted_at))
    if event.frame is not None and event.frame.pts is not None:
        when += f" (video {_video_time(event.frame.pts)})"
    head = f"{event.entry_id} {when} {event.source} #{event.seq} {event.type}"
    if event.type is EventType.SOURCE_STATUS:
        status = f"{event.status}, {event.reason}" if event.reason else str(event.status)
        return f"{head} {status}" + (f" ({event.detail})" if event.detail else "")
    if event.type is EventType.DETECTIONS:
        frame = event.frame.index if event.frame else "?"
        boxes = ", ".join(f"{o.label} {o.confidence:.2f} {_box(o.bbox)}" for o in event.objects)
        return f"{head} frame {frame}: {boxes or 'nothing'}"
    if event.health is not None:
        h = event.health
        return f"{head} {h.condition} {h.state} ({h.value:.3g}, threshold {h.threshold:.3g})"
    if event.drift is not None:
        d = event.drift
        return f"{head} {d.feature} {d.state} (score {d.score:.3f}, threshold {d.threshold:.3g})"
    o = event.object
    if o is None:
        return f"{head} {json.dumps(event.to_dict())}"
    where = event.zone or event.line
    parts = [head, f"{o.label} #{o.track_id}"]
    if where:
        parts.append(f"{where} {event.direction}" if event.direction else where)
    if o.dwell_s is not None:
        parts.append(f"{o.dwell_s:.1f} s")
    if event.reason is not None:
        parts.append(str(event.reason))
    parts.append(_box(o.bbox))
    return " ".join(parts)


def _box(bbox: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in bbox) + "]"
