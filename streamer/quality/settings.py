"""The `health:` section made into the rules the watchers judge by: each condition's
defaults (`conditions.DEFAULT_RULES`) with the file's changes on top."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from streamer.config.schema import HealthConfig
from streamer.events.event import DriftFeature, HealthCondition
from streamer.quality.camera import CameraWatch
from streamer.quality.conditions import DEFAULT_RULES, Rule
from streamer.quality.drift import DriftRules, DriftWatch
from streamer.quality.profiles import SourceProfile

log = logging.getLogger(__name__)

# From clean footage: the largest divergence a clean window had from its baseline, plus a
# margin (docs/operations.md, "Detection drift").
DEFAULT_DRIFT_THRESHOLDS: dict[DriftFeature, float] = {
    DriftFeature.CONFIDENCE: 0.3,  # clean <= 0.211
    DriftFeature.CLASS_MIX: 0.2,  # clean <= 0.097
    DriftFeature.BOX_SIZE: 0.15,  # clean <= 0.043
    DriftFeature.DETECTIONS_PER_FRAME: 0.35,  # clean <= 0.237
}


def camera_rules(health: HealthConfig) -> dict[HealthCondition, tuple[Rule, ...]]:
    """The conditions watched, each with the ways it can be present."""
    out: dict[HealthCondition, tuple[Rule, ...]] = {}
    for condition, default in DEFAULT_RULES.items():
        change = health.conditions.get(condition)
        if change is not None and not change.enabled:
            continue
        rule = default
        if change is not None:
            rule = replace(
                default,
                **{
                    name: value
                    for name in ("threshold", "clear_at", "hold_s", "clear_s")
                    if (value := getattr(change, name)) is not None
                },
            )
        if condition is HealthCondition.BRIGHTNESS:
            # Too bright is as far above the reference as too dark is below it.
            bright = replace(rule, threshold=1 / rule.threshold, clear_at=1 / rule.clear_at,
                             below=False)  # fmt: skip
            out[condition] = (rule, bright)
        else:
            out[condition] = (rule,)
    return out


def drift_rules(health: HealthConfig) -> DriftRules | None:
    """None: drift is not watched."""
    drift = health.drift
    if not drift.enabled:
        return None
    return DriftRules(
        window_s=drift.window_s,
        thresholds={**DEFAULT_DRIFT_THRESHOLDS, **drift.thresholds},
        min_frames=drift.min_frames,
        min_boxes=drift.min_detections,
    )


@dataclass(frozen=True)
class Watchers:
    """A pipeline's watchers, per source: pictures on the source threads, detections on
    the postprocessing thread. Empty without a `health:` section."""

    cameras: Mapping[str, CameraWatch] = field(default_factory=dict)
    drift: Mapping[str, DriftWatch] = field(default_factory=dict)

    def profiles(self) -> dict[str, SourceProfile]:
        """What each source's references are now (learnt, loaded, or as far as learnt)."""
        return {
            sid: SourceProfile(
                camera.learnt(), None if sid not in self.drift else self.drift[sid].learnt()
            )
            for sid, camera in self.cameras.items()
        }


def watchers(
    health: HealthConfig | None,
    source_ids: Sequence[str],
    classes: int,
    profiles: Mapping[str, SourceProfile],
) -> Watchers:
    """The watchers of a pipeline's `health:` section; `profiles`: loaded references."""
    if health is None:
        return Watchers()
    if health.profile is not None:
        missing = [sid for sid in source_ids if sid not in profiles]
        if missing:
            log.warning(
                "health.profile %s has no profile of %s: learnt from their first %g s",
                health.profile, ", ".join(missing), health.baseline_s,
            )  # fmt: skip
    rules = camera_rules(health)
    drift = drift_rules(health)
    cameras, detections = {}, {}
    for sid in source_ids:
        profile = profiles.get(sid, SourceProfile(None, None))
        cameras[sid] = CameraWatch(
            sid, rules, health.sample_fps, health.baseline_s, profile.picture
        )
        if drift is not None:
            detections[sid] = DriftWatch(sid, classes, drift, health.baseline_s, profile.detections)
    return Watchers(cameras, detections)
