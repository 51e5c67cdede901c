"""Where each source's events had got to, kept in memory the supervisor shares.

A shard records every event it makes (`EventFactory`'s `EmitLog`): the source's `seq`
and the highest track id the event names. The values live in a shared array, so the
supervisor still reads them after the shard was killed: the events it had made but not
delivered are counted lost exactly, and the next shard's track ids go on after the
dead one's.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Sequence
from typing import Any

_SEQ, _TRACK = 0, 1


class EmitLedger:
    def __init__(self, source_ids: Sequence[str]) -> None:
        self._index = {sid: i for i, sid in enumerate(source_ids)}
        # Raw: each slot has one writer (the shard holding the source), and an aligned
        # 64-bit store is read whole; a lock would cost every event a system call.
        self._values: Any = multiprocessing.get_context("spawn").RawArray("q", 2 * len(source_ids))

    def record(self, source_id: str, seq: int, track_id: int | None) -> None:
        at = 2 * self._index[source_id]
        self._values[at + _SEQ] = seq
        if track_id is not None and track_id > self._values[at + _TRACK]:
            self._values[at + _TRACK] = track_id

    def seq(self, source_id: str) -> int:
        """The last seq made for the source in this run (0: none)."""
        return int(self._values[2 * self._index[source_id] + _SEQ])

    def track_id(self, source_id: str) -> int:
        """The highest track id an event of the source named (0: none)."""
        return int(self._values[2 * self._index[source_id] + _TRACK])

    def seqs(self, source_ids: Iterable[str]) -> dict[str, int]:
        return {sid: self.seq(sid) for sid in source_ids}

    def track_ids(self, source_ids: Iterable[str]) -> dict[str, int]:
        return {sid: self.track_id(sid) for sid in source_ids}
