"""When a measure becomes a condition: thresholds, hold times and hysteresis.

A condition is raised once its measure has been past the threshold for `hold_s` of the
source's own time, and cleared once it has been back past the clear bound (the threshold
moved towards normal: the hysteresis) for `clear_s`: one `raised` and one `cleared` per
episode, never a flicker of repeats. Pure: the time is the frame's, handed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.events.event import AlertState, HealthCondition


@dataclass(frozen=True)
class Rule:
    """How one condition is judged from its measure."""

    threshold: float  # raised beyond this
    clear_at: float  # cleared back beyond this (between the threshold and normal)
    below: bool  # the condition is a low value (True) or a high one
    hold_s: float
    clear_s: float

    def crossed(self, value: float) -> bool:
        return value < self.threshold if self.below else value > self.threshold

    def recovered(self, value: float) -> bool:
        return value > self.clear_at if self.below else value < self.clear_at


# The defaults, from clean footage (docs/operations.md, "Camera health", has the table):
# each threshold is the worst value clean footage gave, plus a margin.
DEFAULT_RULES: dict[HealthCondition, Rule] = {
    # The 99th percentile of grey: clean footage >= 215; a black picture 0.
    HealthCondition.BLACKOUT: Rule(20.0, 30.0, below=True, hold_s=2.0, clear_s=2.0),
    # The share of the reference's detailed cells that lost their detail: clean <= 0.034.
    HealthCondition.COVERED: Rule(0.5, 0.35, below=False, hold_s=3.0, clear_s=3.0),
    # The share of pixels that changed since the last thumbnail: every 5 s of clean
    # footage has one >= 0.037; a frozen picture re-encoded <= 0.00016. A frozen picture
    # cannot change: one that does is live again at once.
    HealthCondition.FROZEN: Rule(0.005, 0.01, below=True, hold_s=5.0, clear_s=0.0),
    # Correlation of the edge map with the reference's: clean >= 0.585.
    HealthCondition.MOVED: Rule(0.4, 0.5, below=True, hold_s=5.0, clear_s=5.0),
    # Sharpness relative to the reference: clean >= 0.644.
    HealthCondition.BLUR: Rule(0.35, 0.45, below=True, hold_s=5.0, clear_s=3.0),
    # Mean brightness relative to the reference: clean 0.909..1.043. This is the darker
    # bound; the brighter one is its inverse (`settings.camera_rules`).
    HealthCondition.BRIGHTNESS: Rule(0.5, 0.6, below=True, hold_s=5.0, clear_s=3.0),
}

# A condition is not judged while one it follows from is present: a black picture is
# also uniform, still and edgeless; a covered one loses edges, light and detail.
MASKED_BY: dict[HealthCondition, tuple[HealthCondition, ...]] = {
    HealthCondition.BLACKOUT: (),
    HealthCondition.COVERED: (HealthCondition.BLACKOUT,),
    HealthCondition.FROZEN: (HealthCondition.BLACKOUT, HealthCondition.COVERED),
    HealthCondition.MOVED: (HealthCondition.BLACKOUT, HealthCondition.COVERED),
    HealthCondition.BLUR: (
        HealthCondition.BLACKOUT, HealthCondition.COVERED, HealthCondition.MOVED,
    ),
    HealthCondition.BRIGHTNESS: (HealthCondition.BLACKOUT, HealthCondition.COVERED),
}  # fmt: skip


@dataclass(frozen=True)
class Change:
    """A condition raised or cleared at `at_s` (source time) with `value` past `threshold`."""

    state: AlertState
    value: float
    threshold: float
    at_s: float  # when the measure first crossed: the condition's start or end


class Alarm:
    """One condition's state for one source."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        """`rules`: the ways the condition can be present (brightness: too dark or too
        bright); the first that holds raises it, and it clears when that one recovers."""
        self._rules = rules
        self.raised_by: Rule | None = None
        self._pending: tuple[Rule, float] | None = None  # a rule crossed (or recovered) at

    @property
    def raised(self) -> bool:
        return self.raised_by is not None

    def present(self, value: float) -> bool:
        """Whether `value` shows the condition now (before any hold time)."""
        if self.raised_by is not None:
            return not self.raised_by.recovered(value)
        return any(rule.crossed(value) for rule in self._rules)

    def pause(self) -> None:
        """Not judged now (a condition it follows from is present): what was pending
        starts afresh."""
        self._pending = None

    def update(self, value: float, at_s: float) -> Change | None:
        if self.raised_by is None:
            rule = next((r for r in self._rules if r.crossed(value)), None)
            if rule is None:
                self._pending = None
                return None
            hold_s = rule.hold_s
        else:
            rule = self.raised_by
            if not rule.recovered(value):
                self._pending = None
                return None
            hold_s = rule.clear_s
        if self._pending is None or self._pending[0] is not rule:
            self._pending = (rule, at_s)
        started_s = self._pending[1]
        if at_s - started_s < hold_s:
            return None
        self._pending = None
        if self.raised_by is None:
            self.raised_by = rule
            return Change(AlertState.RAISED, value, rule.threshold, started_s)
        self.raised_by = None
        return Change(AlertState.CLEARED, value, rule.clear_at, started_s)
