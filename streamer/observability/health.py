"""Whether a run is healthy, as `/healthz` answers (DESIGN.md section 13): every source
connected or retrying within its budget, and the sink delivering. Pure: the counts and
the time are given.

A camera-health condition or a drift (`health:`) is listed with its source (`raised`)
but leaves the run healthy: the pipeline works, it is the camera or the scene that needs
a person, and `camera_health` events say so."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamer.events.event import SourceProblem, SourceState
from streamer.runtime.messages import EndReason
from streamer.runtime.stats import STARTING, SourceHealth, Totals


@dataclass(frozen=True)
class SourceCondition:
    """One source as `/healthz` and the preview page show it."""

    state: str  # a SourceState, or "starting"
    detail: str | None
    problem: SourceProblem | None  # down for something a person must fix
    healthy: bool
    down_s: float | None  # how long it has been without a connection
    last_frame_age_s: float | None
    fps: float
    raised: tuple[str, ...] = ()  # camera-health conditions raised, drifted features

    @property
    def notice(self) -> str | None:
        """What to write across its picture: why it shows no live frame (None: it does)."""
        if self.state == SourceState.CONNECTED:
            return None
        what = self.state if self.problem is None else self.problem.value
        return what if not self.detail else f"{what}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "problem": None if self.problem is None else self.problem.value,
            "healthy": self.healthy,
            "down_s": _round(self.down_s),
            "last_frame_age_s": _round(self.last_frame_age_s),
            "fps": round(self.fps, 2),
            "raised": list(self.raised),
        }


@dataclass(frozen=True)
class Health:
    healthy: bool
    problems: tuple[str, ...]  # one line each; empty when healthy
    sources: Mapping[str, SourceCondition]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "problems": list(self.problems),
            "sources": {sid: c.to_dict() for sid, c in self.sources.items()},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def condition(
    health: SourceHealth, down_budget_s: float, now: float, raised: tuple[str, ...] = ()
) -> SourceCondition:
    """`down_budget_s`: how long a source may retry before it counts as unhealthy;
    `raised`: what its camera-health and drift watchers have raised."""
    down_s = None if health.down_since is None else max(0.0, now - health.down_since)
    if health.state is SourceState.ENDED:
        healthy = health.detail != EndReason.FAILED
    elif health.problem is not None:
        healthy = False  # no retry will mend it
    else:
        healthy = down_s is None or down_s <= down_budget_s
    return SourceCondition(
        state=health.state.value if health.state is not None else STARTING,
        detail=health.detail,
        problem=health.problem,
        healthy=healthy,
        down_s=down_s,
        last_frame_age_s=None if health.last_frame_at is None else now - health.last_frame_at,
        fps=health.fps,
        raised=raised,
    )


def assess(
    totals: Totals,
    down_budget_s: Mapping[str, float],
    now: float,
    failure: BaseException | None = None,
) -> Health:
    """The run's health at `now` (wall clock); `failure`: what failed the run, if anything did."""
    sources = {
        sid: condition(
            totals.health.get(sid, SourceHealth()),
            down_budget_s.get(sid, 0.0),
            now,
            tuple(totals.quality[sid].raised) if sid in totals.quality else (),
        )
        for sid in totals.sources
    }
    problems = [] if failure is None else [f"the run failed: {failure}"]
    for sid, c in sources.items():
        if not c.healthy:
            what = c.state if c.problem is None else f"{c.state}, {c.problem}"
            down = "" if c.down_s is None else f" for {c.down_s:.0f} s"
            problems.append(f"source {sid}: {what}{down}" + (f" ({c.detail})" if c.detail else ""))
    if totals.sink_down_since is not None:
        problems.append(f"Redis has refused events for {now - totals.sink_down_since:.0f} s")
    return Health(not problems, tuple(problems), sources)
