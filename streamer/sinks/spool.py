"""Where the Redis sink keeps the events Redis has not confirmed yet: in memory or in a file.

A spool is a bounded FIFO of `Pending` events. The sink appends what it takes from the
pipeline, writes from the head, and drops the head once Redis has it. When an append
would overflow the spool, the oldest events make room and the caller is told how many.

`MemorySpool` is a deque: the default, and gone with the process. `DiskSpool` is one
SQLite table in WAL mode, its integer key giving the order; each append and each drop is
one transaction. Once `extend` returned, its events survive a crash or kill -9 of the
process, and the next run that opens the file delivers them first.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from streamer.errors import SinkError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    """One event as it will be written to Redis."""

    key: str  # the stream
    event_id: str  # the event's `id`, to tell whether Redis already has it
    fields: dict[str, str]  # the stream entry's fields: event, type, source
    captured_ns: int | None  # of the frame that caused it, for latency; None: unknown


class Spool(Protocol):
    max_events: int
    recovered: int
    """Events found in the spool when it was opened, left by an earlier run."""

    def __len__(self) -> int: ...

    def extend(self, events: list[Pending]) -> int:
        """Append `events`; the number of oldest events dropped to stay within max_events."""

    def head(self, n: int) -> list[Pending]:
        """The `n` oldest events (fewer when the spool holds fewer), left in place."""

    def drop(self, n: int) -> None:
        """Remove the `n` oldest events."""

    def keys(self) -> set[str]:
        """The streams of the events held."""

    def close(self) -> int:
        """Release the spool; how many of the events it still holds are lost with it."""


class MemorySpool:
    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self.recovered = 0
        # maxlen: extending a full deque discards from the left, the oldest first.
        self._events: deque[Pending] = deque(maxlen=max_events)

    def __len__(self) -> int:
        return len(self._events)

    def extend(self, events: list[Pending]) -> int:
        dropped = max(0, len(self._events) + len(events) - self.max_events)
        self._events.extend(events)
        return dropped

    def head(self, n: int) -> list[Pending]:
        return list(itertools.islice(self._events, n))

    def drop(self, n: int) -> None:
        for _ in range(n):
            self._events.popleft()

    def keys(self) -> set[str]:
        return {p.key for p in self._events}

    def close(self) -> int:
        lost = len(self._events)
        self._events.clear()
        return lost


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    pos INTEGER PRIMARY KEY,  -- delivery order
    key TEXT NOT NULL,
    id TEXT NOT NULL,
    event TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    captured_ns INTEGER
)
"""
_OLDEST = "SELECT pos FROM events ORDER BY pos LIMIT ?"


class DiskSpool:
    """A spool in a SQLite file that one process at a time may use."""

    def __init__(self, path: Path, max_events: int) -> None:
        self.path = path
        self.max_events = max_events
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Opened here, used by the sink's thread only from then on.
            self._db = sqlite3.connect(path, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise SinkError(f"{path}: event spool file cannot be opened ({exc})") from None
        try:
            # Held until the process ends: two runs sharing the file would both deliver
            # its events. Set before WAL is entered, so no shared-memory index is needed.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            # A commit is in the WAL file when it returns, which a crash of the process
            # cannot undo; only a power cut may take the last ones (FULL would fsync each).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._count: int = self._db.execute("SELECT count(*) FROM events").fetchone()[0]
            if self._count:
                with self._db:  # monotonic stamps of another process mean nothing here
                    self._db.execute("UPDATE events SET captured_ns = NULL")
        except sqlite3.Error as exc:
            self._db.close()
            busy = "locked" in str(exc)
            why = "in use by another streamer process" if busy else f"cannot be used ({exc})"
            raise SinkError(f"{path}: event spool file {why}") from None
        self.recovered = self._count
        if self._count:
            log.warning(
                "%s: %d events left by an earlier run; delivering them first", path, self._count
            )

    def __len__(self) -> int:
        return self._count

    def extend(self, events: list[Pending]) -> int:
        dropped = max(0, self._count + len(events) - self.max_events)
        with self._db:  # one transaction
            self._db.executemany(
                "INSERT INTO events (key, id, event, type, source, captured_ns)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (p.key, p.event_id, p.fields["event"], p.fields["type"], p.fields["source"],
                     p.captured_ns)
                    for p in events
                ],
            )  # fmt: skip
            if dropped:
                self._db.execute(f"DELETE FROM events WHERE pos IN ({_OLDEST})", (dropped,))
        self._count += len(events) - dropped
        return dropped

    def head(self, n: int) -> list[Pending]:
        rows = self._db.execute(
            "SELECT key, id, event, type, source, captured_ns FROM events ORDER BY pos LIMIT ?",
            (n,),
        )
        return [
            Pending(key, event_id, {"event": event, "type": type_, "source": source}, captured)
            for key, event_id, event, type_, source, captured in rows
        ]

    def drop(self, n: int) -> None:
        if n:
            with self._db:  # one transaction
                self._db.execute(f"DELETE FROM events WHERE pos IN ({_OLDEST})", (n,))
            self._count -= n

    def keys(self) -> set[str]:
        return {key for (key,) in self._db.execute("SELECT DISTINCT key FROM events")}

    def close(self) -> int:
        if self._count:
            log.warning(
                "%d undelivered events stay in %s; the next run with it delivers them first",
                self._count,
                self.path,
            )
        self._db.close()
        return 0


def open_spool(path: Path | None, max_events: int) -> Spool:
    """The spool a pipeline asks for: a file at `path`, else memory."""
    return MemorySpool(max_events) if path is None else DiskSpool(path, max_events)
