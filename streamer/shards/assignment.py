"""Which shard runs which source: rendezvous hashing, weighted by capacity, bounded.

Each (source, shard) pair gets a score from a hash, scaled by the shard's capacity
(weighted rendezvous hashing: `-capacity / ln(u)`, u uniform in (0, 1)); a source goes
to its best-scoring shard. The rule is stable: adding a shard moves only the sources that
now score best on it, and removing one moves only its own. With few sources per shard
pure hashing can be lopsided (four cameras on two shards all land on one an eighth of
the time), so each shard takes at most its share of the sources (rounded up): a source
whose best shard is full goes to its next best. Sources are placed strongest preference
first, so the bound moves as few as it can.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence


def score(source_id: str, shard: str, capacity: float) -> float:
    """The weighted rendezvous score of `source_id` on `shard`: higher wins."""
    digest = hashlib.blake2b(f"{source_id}\0{shard}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / 2**64  # uniform in (0, 1)
    return -capacity / math.log(u)


def assign(source_ids: Sequence[str], capacities: Mapping[str, float]) -> dict[str, str]:
    """Source id -> shard name, for shards of the given capacities (> 0).

    >>> assign(["cam1", "cam2", "cam3", "cam4"], {"shard-0": 1.0, "shard-1": 1.0})
    {'cam1': 'shard-0', 'cam2': 'shard-1', 'cam3': 'shard-0', 'cam4': 'shard-1'}
    """
    if not capacities:
        raise ValueError("no shard to assign sources to")
    if any(c <= 0 for c in capacities.values()):
        raise ValueError(f"shard capacities must be more than 0: {dict(capacities)}")
    total = sum(capacities.values())
    room = {s: math.ceil(len(source_ids) * c / total) for s, c in capacities.items()}
    ranked = {
        sid: sorted(capacities, key=lambda s: score(sid, s, capacities[s]), reverse=True)
        for sid in source_ids
    }

    def preference(sid: str) -> float:
        first, *rest = ranked[sid]
        best = score(sid, first, capacities[first])
        return best - (score(sid, rest[0], capacities[rest[0]]) if rest else 0.0)

    placed: dict[str, str] = {}
    for sid in sorted(source_ids, key=lambda s: (-preference(s), s)):
        shard = next(s for s in ranked[sid] if room[s] > 0)
        room[shard] -= 1
        placed[sid] = shard
    return {sid: placed[sid] for sid in source_ids}


def by_shard(assignment: Mapping[str, str], shards: Sequence[str]) -> dict[str, list[str]]:
    """Shard name -> its sources, in the order given; every shard named, even if empty."""
    out: dict[str, list[str]] = {s: [] for s in shards}
    for sid, shard in assignment.items():
        out[shard].append(sid)
    return out
