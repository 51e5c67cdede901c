"""How a run is going: a progress bar on a terminal when the number of frames is known
(offline files), otherwise one log line every REPORT_EVERY_S seconds."""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger("streamer")

REPORT_EVERY_S = 10.0


def summary(s: dict[str, Any]) -> str:
    """One line from a stats snapshot."""
    dropped = sum(s["frames"]["dropped"].values())
    return (
        f"{s['frames']['decoded']} decoded, {s['frames']['processed']} processed, "
        f"{dropped} dropped, {s['fps']:.1f} fps, latency p50 {s['latency_ms']['p50']:.0f} ms "
        f"p99 {s['latency_ms']['p99']:.0f} ms, events {s['events']['delivered']} delivered "
        f"{s['events']['lost']} lost"
    )


class RunDisplay:
    def __init__(self, total_frames: int | None, interactive: bool) -> None:
        self._bar: Progress | None = None
        self._task = None
        if total_frames and interactive:
            self._bar = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("frames {task.fields[fps]:>6.1f} fps"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task("processing", total=total_frames, fps=0.0)
        self._next_report = time.monotonic() + REPORT_EVERY_S

    def update(self, snapshot: dict[str, Any]) -> None:
        done = snapshot["frames"]["processed"] + sum(snapshot["frames"]["dropped"].values())
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, fps=snapshot["fps"])
        elif time.monotonic() >= self._next_report:
            log.info(summary(snapshot))
            self._next_report = time.monotonic() + REPORT_EVERY_S

    def __enter__(self) -> RunDisplay:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
