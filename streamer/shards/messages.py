"""What a shard and its supervisor tell each other, over a pipe (or Ray calls)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from streamer.runtime.stats import Totals


@dataclass(frozen=True)
class ShardStarted:
    """Built and running; a restarted shard's sources go on after `last_seqs`."""

    host: str
    pid: int
    last_seqs: Mapping[str, int]


@dataclass(frozen=True)
class ShardProgress:
    totals: Totals
    seqs: Mapping[str, int]  # per source, the last seq made
    track_ids: Mapping[str, int]  # per source, the highest track id an event named
    snapshots: Mapping[str, bytes] = field(default_factory=dict)  # JPEGs, while wanted


@dataclass(frozen=True)
class ShardEnded:
    """The shard's run ended: its sources ended, or it was stopped; or it failed."""

    totals: Totals
    failure: str | None  # one line; None: it ended well


@dataclass(frozen=True)
class StopShard:
    drain_timeout_s: float


@dataclass(frozen=True)
class SendSnapshots:
    """Someone looks at the preview: send the sources' snapshots for `for_s` seconds."""

    for_s: float


ShardMessage = ShardStarted | ShardProgress | ShardEnded
