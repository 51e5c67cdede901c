"""Multi-object tracking for one source: ByteTrack's association on a clock, not a frame count.

ByteTrack (Zhang et al., 2022) matches confident boxes to every live track first, then the
remaining tracks to low-confidence boxes, which keeps a track alive through a partial
occlusion. Motion is a constant-velocity Kalman filter over box centre and size.

Unlike the reference implementation, everything here is measured in seconds of the
source's own clock: prediction steps by the time between frames and a track is lost after
`lost_after_s`, so frames dropped under load make a step longer instead of ending tracks.
Written here rather than taken from a package because the packaged ByteTracks count
frames (a dropped frame ages every track) and pull in heavy dependencies; the filter and
the matching are vectorised over all tracks so 50 objects cost well under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.analytics.boxes import match_by_iou
from streamer.config.schema import TrackingConfig
from streamer.runtime.messages import Detections

# Kalman noise, as fractions of the box height (ByteTrack's weights, per 1/30 s frame).
_POSITION_STD = 1.0 / 20
_VELOCITY_STD = 1.0 / 160
_REFERENCE_STEP_S = 1.0 / 30
_MAX_STEP_S = 1.0  # a longer gap predicts no further: velocity is not known that well


@dataclass(frozen=True)
class TrackerSettings:
    high_confidence: float = 0.5  # boxes that may start tracks and are matched first
    low_confidence: float = 0.1  # weaker boxes, only used to keep existing tracks alive
    match_iou: float = 0.2  # least IoU between a predicted track and a box, first round
    low_match_iou: float = 0.5  # the same for the second, low-confidence round
    confirm_hits: int = 3  # boxes a new track needs before it counts as an object
    confirm_s: float = 0.5  # and seconds it must have been seen for
    lost_after_s: float = 1.0  # unseen this long: the object has left

    @classmethod
    def from_config(cls, tracking: TrackingConfig, model_confidence: float) -> TrackerSettings:
        """The pipeline's `tracking:` section; `model_confidence` stands in for an unset
        high_confidence."""
        high = tracking.high_confidence
        high = model_confidence if high is None else high
        return cls(
            high_confidence=high,
            low_confidence=min(tracking.low_confidence, high),
            match_iou=tracking.match_iou,
            confirm_hits=tracking.confirm_hits,
            confirm_s=tracking.confirm_s,
            lost_after_s=tracking.lost_after_s,
        )


@dataclass
class Track:
    """One tracked object. `box` is the last box it was seen with, as detected."""

    track_id: int
    class_id: int
    box: np.ndarray  # x1, y1, x2, y2 in source pixels
    confidence: float
    first_seen_s: float
    last_seen_s: float
    hits: int = 1
    best_confidence: float = 0.0
    confirmed: bool = False
    detection: int = -1  # index of its box among the detections of the last update

    @property
    def dwell_s(self) -> float:
        return self.last_seen_s - self.first_seen_s


@dataclass(frozen=True)
class TrackerUpdate:
    """What one frame did to the tracks."""

    seen: list[Track]  # tracks matched to a box in this frame (tentative ones too)
    confirmed: list[Track]  # became objects in this frame (also in `seen`)
    ended: list[Track]  # confirmed tracks that are gone (unseen for lost_after_s)
    discarded: list[Track]  # tentative tracks that were not seen again: never objects


def _to_state(boxes: np.ndarray) -> np.ndarray:
    """x1,y1,x2,y2 -> centre x, centre y, width, height."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    return np.concatenate([boxes[:, 0:2] + wh / 2, wh], axis=1)


def _to_boxes(state: np.ndarray) -> np.ndarray:
    half = state[:, 2:4] / 2
    return np.concatenate([state[:, 0:2] - half, state[:, 0:2] + half], axis=1)


class KalmanBoxes:
    """Constant-velocity Kalman filters for N boxes at once: state (cx, cy, w, h) and
    their velocities in pixels per second."""

    def __init__(self) -> None:
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))

    def add(self, boxes: np.ndarray) -> None:
        z = _to_state(boxes)
        h = z[:, 3:4]
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        pos = 2 * _POSITION_STD * h
        vel = 10 * _VELOCITY_STD * h / _REFERENCE_STEP_S
        std = np.concatenate([pos, pos, pos, pos, vel, vel, vel, vel], axis=1)
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, np.apply_along_axis(np.diag, 1, std**2)])

    def keep(self, rows: np.ndarray) -> None:
        self.mean, self.cov = self.mean[rows], self.cov[rows]

    def predict(self, step_s: float) -> None:
        if not len(self.mean) or step_s <= 0:
            return
        dt = min(step_s, _MAX_STEP_S)
        motion = np.eye(8)
        motion[:4, 4:] = dt * np.eye(4)
        h = self.mean[:, 3:4]
        scale = dt / _REFERENCE_STEP_S
        pos = _POSITION_STD * h
        vel = _VELOCITY_STD * h / _REFERENCE_STEP_S
        q = np.concatenate([pos, pos, pos, pos, vel, vel, vel, vel], axis=1) ** 2 * scale
        self.mean = self.mean @ motion.T
        self.cov = motion @ self.cov @ motion.T
        self.cov[:, range(8), range(8)] += q

    def update(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """Correct the filters `rows` with measured `boxes`."""
        if not len(rows):
            return
        z = _to_state(boxes)
        mean, cov = self.mean[rows], self.cov[rows]
        r = (_POSITION_STD * z[:, 3:4]) ** 2 * np.ones((1, 4))
        innovation_cov = cov[:, :4, :4] + np.apply_along_axis(np.diag, 1, r)
        gain = cov[:, :, :4] @ np.linalg.inv(innovation_cov)
        self.mean[rows] = mean + (gain @ (z - mean[:, :4])[:, :, None])[:, :, 0]
        self.cov[rows] = cov - gain @ cov[:, :4, :]

    def boxes(self) -> np.ndarray:
        return _to_boxes(self.mean[:, :4])


class Tracker:
    """Tracks the boxes of one source across frames; call `update` once per frame, in
    time order, and `end_all` when the source ends."""

    def __init__(self, settings: TrackerSettings, first_id: int = 1) -> None:
        """`first_id`: the first track id given; a source taken over from a shard that
        died goes on after the ids that shard gave."""
        self.settings = settings
        self._tracks: list[Track] = []
        self._filters = KalmanBoxes()
        self._last_s: float | None = None
        self._next_id = first_id

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def update(self, t_s: float, detections: Detections) -> TrackerUpdate:
        previous_s = self._last_s
        if previous_s is not None:
            self._filters.predict(t_s - previous_s)
        self._last_s = t_s
        expired = self._expire(t_s)
        matches, unclaimed = self._associate(detections, previous_s)
        seen, confirmed = self._apply(matches, detections, t_s)
        discarded = [t for t in expired if not t.confirmed] + self._drop_missed_tentative(matches)
        for track in self._start(unclaimed, detections, t_s):
            seen.append(track)
            if track.confirmed:
                confirmed.append(track)
        ended = [t for t in expired if t.confirmed]
        return TrackerUpdate(seen=seen, confirmed=confirmed, ended=ended, discarded=discarded)

    def hold(self, t_s: float) -> list[Track]:
        """A frame the model did not look at, because nothing moved: every track stays
        where it was, and the time since each was last seen does not grow (what was not
        looked for was not missed). The tracks in view at the last frame, which are still
        in view at this one."""
        previous_s = self._last_s
        if previous_s is None or t_s <= previous_s:
            return []
        in_view = [t for t in self._tracks if t.last_seen_s == previous_s]
        for track in self._tracks:
            track.last_seen_s += t_s - previous_s
        for track in in_view:
            track.last_seen_s = t_s  # exactly: later frames compare times for equality
        self._last_s = t_s
        return in_view

    def end_all(self) -> list[Track]:
        """Every confirmed track, as ended; the tracker starts afresh."""
        ended = [t for t in self._tracks if t.confirmed]
        self._tracks = []
        self._filters = KalmanBoxes()
        self._last_s = None
        return ended

    def _keep(self, rows: list[int]) -> None:
        self._tracks = [self._tracks[i] for i in rows]
        self._filters.keep(np.array(rows, dtype=np.int64))

    def _expire(self, t_s: float) -> list[Track]:
        """Remove the tracks unseen for longer than lost_after_s, whatever this frame shows:
        the outcome does not depend on whether the frames in between were dropped."""
        oldest_s = t_s - self.settings.lost_after_s
        expired = [t for t in self._tracks if t.last_seen_s < oldest_s]
        if expired:
            self._keep([i for i, t in enumerate(self._tracks) if t.last_seen_s >= oldest_s])
        return expired

    def _associate(
        self, detections: Detections, previous_s: float | None
    ) -> tuple[dict[int, int], list[int]]:
        """Track row -> detection index, and the confident detections nothing claimed."""
        s = self.settings
        conf = detections.confidence
        high = [int(d) for d in np.flatnonzero(conf >= s.high_confidence)]
        low = [
            int(d) for d in np.flatnonzero((conf >= s.low_confidence) & (conf < s.high_confidence))
        ]
        predicted = self._filters.boxes()
        last_seen = np.array([t.box for t in self._tracks]).reshape(-1, 4)
        established = [i for i, t in enumerate(self._tracks) if t.confirmed]
        tentative = [i for i, t in enumerate(self._tracks) if not t.confirmed]
        matches: dict[int, int] = {}

        def assign(
            rows: list[int], boxes: np.ndarray, free: list[int], min_iou: float
        ) -> list[int]:
            rows = [r for r in rows if r not in matches]
            classes = np.array([self._tracks[r].class_id for r in rows], dtype=np.int64)
            pairs = match_by_iou(boxes[rows], classes, detections.xyxy[free],
                           detections.class_id[free], min_iou)  # fmt: skip
            for r, c, _ in pairs:
                matches[rows[r]] = free[c]
            taken = {free[c] for _, c, _ in pairs}
            return [d for d in free if d not in taken]

        # Round 1: confident boxes against the predicted boxes of confirmed tracks (seen
        # or lost), then of tentative ones.
        high = assign(established, predicted, high, s.match_iou)
        high = assign(tentative, predicted, high, s.match_iou)
        # Round 1b (OC-SORT's recovery): a track whose prediction missed, because the
        # object turned or stopped during a gap, by the box it was last seen with.
        high = assign(established, last_seen, high, s.match_iou)
        # Round 2: weak boxes keep confirmed tracks that were seen last frame alive.
        recent = [i for i in established if self._tracks[i].last_seen_s == previous_s]
        assign(recent, predicted, low, s.low_match_iou)
        return matches, high

    def _apply(
        self, matches: dict[int, int], detections: Detections, t_s: float
    ) -> tuple[list[Track], list[Track]]:
        """Update the matched tracks; (seen, newly confirmed)."""
        seen, confirmed = [], []
        for row, d in matches.items():
            track = self._tracks[row]
            track.detection = d
            track.box = detections.xyxy[d].copy()
            track.confidence = float(detections.confidence[d])
            track.best_confidence = max(track.best_confidence, track.confidence)
            track.last_seen_s = t_s
            track.hits += 1
            if not track.confirmed and self._is_confirmed(track):
                track.confirmed = True
                confirmed.append(track)
            seen.append(track)
        rows = sorted(matches)
        self._filters.update(
            np.array(rows, dtype=np.int64), detections.xyxy[[matches[r] for r in rows]]
        )
        return seen, confirmed

    def _drop_missed_tentative(self, matches: dict[int, int]) -> list[Track]:
        """A tentative track missed once was noise; a confirmed one may be behind something."""
        dropped = [t for i, t in enumerate(self._tracks) if i not in matches and not t.confirmed]
        if dropped:
            self._keep([i for i, t in enumerate(self._tracks) if i in matches or t.confirmed])
        return dropped

    def _start(self, unclaimed: list[int], detections: Detections, t_s: float) -> list[Track]:
        """New tracks from the confident boxes nothing claimed."""
        if not unclaimed:
            return []
        self._filters.add(detections.xyxy[unclaimed])
        started = []
        for d in unclaimed:
            confidence = float(detections.confidence[d])
            track = Track(
                track_id=self._next_id,
                class_id=int(detections.class_id[d]),
                box=detections.xyxy[d].copy(),
                confidence=confidence,
                best_confidence=confidence,
                first_seen_s=t_s,
                last_seen_s=t_s,
                detection=d,
            )
            self._next_id += 1
            track.confirmed = self._is_confirmed(track)
            self._tracks.append(track)
            started.append(track)
        return started

    def _is_confirmed(self, track: Track) -> bool:
        return (
            track.hits >= self.settings.confirm_hits
            and track.last_seen_s - track.first_seen_s >= self.settings.confirm_s
        )
