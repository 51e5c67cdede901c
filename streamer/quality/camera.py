"""Watches one camera's picture: a thumbnail a few times a second, its measures against
the source's reference, and the conditions they raise and clear.

Runs on the source's own thread, on frames as they are decoded: a frame dropped later
for lateness was still seen here, so a pipeline under load watches its cameras as well
as an idle one. Time is the frame's, on the source's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
from av.video.reformatter import VideoReformatter

from streamer.events.event import AlertState, CameraHealth, HealthCondition
from streamer.quality.conditions import MASKED_BY, Alarm, Rule
from streamer.quality.picture import Measures, Reference, changed_share, luma, measure, thumbnail
from streamer.runtime.messages import Frame
from streamer.runtime.stats import Gauge

log = logging.getLogger(__name__)

# The most pictures a reference is learnt from: a profile learnt over hours keeps every
# other one each time this is reached, so they stay spread over the whole run.
MAX_LEARNT = 512


def values(m: Measures, ref: Reference | None, still: float | None) -> dict[HealthCondition, float]:
    """What each condition is judged by, for one thumbnail (those needing a reference
    only when there is one; frozen only from the second thumbnail on). Blackout and
    frozen need none: what a black or frozen picture is does not depend on what the
    camera showed before."""
    out = {HealthCondition.BLACKOUT: m.bright_level}
    if still is not None:
        out[HealthCondition.FROZEN] = still
    if ref is not None:
        out[HealthCondition.COVERED] = ref.covered_share(m)
        out[HealthCondition.MOVED] = ref.structure_match(m)
        out[HealthCondition.BLUR] = ref.sharpness_ratio(m)
        out[HealthCondition.BRIGHTNESS] = ref.brightness_ratio(m)
    return out


class CameraWatch:
    """One source's picture health. `observe` every decoded frame; it measures one every
    `1 / sample_fps` seconds of the source's time and returns the changes it sees (None
    for a frame it did not measure)."""

    def __init__(
        self,
        source_id: str,
        rules: Mapping[HealthCondition, tuple[Rule, ...]],
        sample_fps: float,
        baseline_s: float,
        reference: Reference | None = None,
    ) -> None:
        """`rules`: the conditions watched; `reference`: a saved one (else the first
        `baseline_s` seconds of pictures are learnt as it)."""
        self.source_id = source_id
        self._alarms = {c: Alarm(r) for c, r in rules.items()}
        self._interval_s = 1.0 / sample_fps
        self._baseline_s = baseline_s
        self.reference = reference
        self._learning: list[Measures] = []
        self._learn_every = 1  # keep one measured picture in this many
        self._measured = 0
        self._started_s: float | None = None
        self._next_s: float | None = None
        self._previous: np.ndarray | None = None
        self._reformatter = VideoReformatter()
        self.gauges: dict[str, Gauge] = {}  # per condition judged: its latest measure

    def observe(self, frame: Frame) -> list[CameraHealth] | None:
        at_s = frame.time_s
        if self._next_s is not None and at_s < self._next_s:
            return None
        if self._next_s is not None and at_s - self._next_s > self._interval_s * 4:
            self._previous = None  # a gap (a reconnection): no "still" across it
        self._next_s = at_s + self._interval_s
        thumb = thumbnail(luma(frame.picture, self._reformatter))
        still = None if self._previous is None else changed_share(self._previous, thumb)
        self._previous = thumb
        m = measure(thumb)
        self._learn(m, at_s)
        return self._judge(values(m, self.reference, still), at_s, frame.captured_at)

    def _learn(self, m: Measures, at_s: float) -> None:
        if self.reference is not None:
            return
        if self._started_s is None:
            self._started_s = at_s
        if self._measured % self._learn_every == 0:
            self._learning.append(m)
            if len(self._learning) >= MAX_LEARNT:
                self._learning = self._learning[::2]
                self._learn_every *= 2
        self._measured += 1
        if at_s - self._started_s >= self._baseline_s:
            self.reference = Reference.learn(self._learning)
            self._learning = []
            log.info("source %s: picture reference learnt", self.source_id)

    def learnt(self) -> Reference | None:
        """The reference: loaded, learnt, or learnt from what was seen so far."""
        if self.reference is None and self._learning:
            return Reference.learn(self._learning)
        return self.reference

    def _judge(
        self, measured: Mapping[HealthCondition, float], at_s: float, wall_s: float
    ) -> list[CameraHealth]:
        present = {c: self._alarms[c].present(v) for c, v in measured.items() if c in self._alarms}
        changes = []
        for condition, alarm in self._alarms.items():
            value = measured.get(condition)
            if value is None:
                continue
            if any(present.get(m, False) or self._raised(m) for m in MASKED_BY[condition]):
                alarm.pause()
                continue
            change_ = alarm.update(value, at_s)
            self.gauges[str(condition)] = Gauge(value, alarm.raised)
            if change_ is None:
                continue
            # When it started (or ended), on the wall clock: the frame's time less the
            # source time since then.
            since = wall_s - (at_s - change_.at_s)
            changes.append(
                CameraHealth(
                    condition,
                    change_.state,
                    round(value, 4),
                    round(change_.threshold, 4),
                    round(since, 3),
                )
            )
            level = logging.WARNING if change_.state is AlertState.RAISED else logging.INFO
            log.log(
                level, "source %s: %s %s (%.3g, threshold %.3g)",
                self.source_id, condition, change_.state, value, change_.threshold,
            )  # fmt: skip
        return changes

    def _raised(self, condition: HealthCondition) -> bool:
        alarm = self._alarms.get(condition)
        return alarm is not None and alarm.raised
