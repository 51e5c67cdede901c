"""Multi-object tracking for one source: ByteTrack's association on a clock, not a frame count.

ByteTrack (Zhang et al., 2022) matches confident boxes to every live track first, then the
remaining tracks to low-confidence boxes, which keeps a track alive through a partial
occlusion; here both are one assignment, the weak boxes with a higher bar. Motion is a
constant-velocity Kalman filter over box centre and size.

Unlike the reference implementation, everything here is measured in seconds of the
source's own clock: prediction steps by the time between frames and a track is lost after
`lost_after_s`, so frames dropped under load make a step longer instead of ending tracks.
Beyond it: an object that disappears inside the picture (behind a pillar, another person)
is kept for `max_hidden_s` and taken back where the motion it had when last seen whole
was taking it (OC-SORT's observation-centric idea: the boxes of an object going out of
sight shrink to the part that shows and mislead the filter); labels of one group (car,
truck, bus) match each other, and an object's label is its boxes' confidence-weighted
majority. benchmarks/tracker_quality.py measures it against the `trackers` package's
SORT, ByteTrack, OC-SORT and BoT-SORT. Written here rather than taken from a package
because the packaged trackers keep no object lifecycle on the source's clock (confirmation
in seconds, objects held through motion-skipped frames, ends that become events) and
measured worse identities on the same detections; the filter and the matching are
vectorised over all tracks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from streamer.analytics.boxes import match_by_iou
from streamer.config.schema import TrackingConfig
from streamer.runtime.messages import Detections

# Kalman noise, as fractions of the box height (ByteTrack's weights, per 1/30 s frame).
_POSITION_STD = 1.0 / 20
_VELOCITY_STD = 1.0 / 160
_REFERENCE_STEP_S = 1.0 / 30
_MAX_STEP_S = 1.0  # a longer gap predicts no further: velocity is not known that well
# How far from where its motion was taking it a hidden object may reappear, in box
# heights (plus half the way it would have gone), and how tall its new box may be.
RECOVER_REACH = 0.75
RECOVER_HEIGHTS = (0.6, 1.6)
SIZE_MEMORY_S = 1.0  # the time constant of a track's running box size
WHOLE_SHARE = 0.85  # a box this share of its running width and height shows it whole
TENTATIVE_GAP_S = 0.25  # a track not yet an object, unseen longer, was noise
# A track unseen this long may be taken back by where it was going even if the frame
# before this one saw it: frames were dropped in between, and a box seen last as the
# object came out from behind something misleads the filter over a long step.
RECOVER_AFTER_S = 0.2
EDGE_SHARE = 0.02  # a box this close to the picture's edge (of its larger side) touches it
INWARD_HEIGHTS_S = 0.2  # moving in from the edge this fast (box heights a second): arriving
# Labels that are one kind of object unless the pipeline says otherwise (COCO's vehicles,
# which detectors confuse with each other).
DEFAULT_CLASS_GROUPS = (("car", "truck", "bus"),)


def class_kinds(groups: Sequence[Sequence[str]], labels: Sequence[str]) -> tuple[int, ...]:
    """For each class id of `labels`, the class id that stands for its kind: the first
    label of its group that the model has (labels the model lacks are left out), or
    itself.

    >>> class_kinds([["car", "truck", "bus"]], ["person", "truck", "car", "dog"])
    (0, 1, 1, 3)
    """
    kinds = list(range(len(labels)))
    for group in groups:
        ids = [labels.index(name) for name in group if name in labels]
        for class_id in ids:
            kinds[class_id] = min(ids)
    return tuple(kinds)


@dataclass(frozen=True)
class TrackerSettings:
    high_confidence: float = 0.5  # boxes that may start tracks and are matched first
    low_confidence: float = 0.1  # weaker boxes, only used to keep existing tracks alive
    match_iou: float = 0.2  # least IoU between a predicted track and a box, first round
    low_match_iou: float = 0.5  # the same for a low-confidence box
    confirm_hits: int = 3  # boxes a new track needs before it counts as an object
    confirm_s: float = 0.1  # and seconds it must have been seen for
    lost_after_s: float = 1.0  # unseen this long, last seen at the picture's edge: it has left
    max_hidden_s: float = 5.0  # unseen this long, last seen inside the picture: it has left
    kinds: tuple[int, ...] = ()  # class id -> the class id of its kind (`class_kinds`)

    @classmethod
    def from_config(
        cls, tracking: TrackingConfig, model_confidence: float, labels: Sequence[str] = ()
    ) -> TrackerSettings:
        """The pipeline's `tracking:` section; `model_confidence` stands in for an unset
        high_confidence; `labels`: the model's, which the class groups name."""
        high = tracking.high_confidence
        high = model_confidence if high is None else high
        groups = DEFAULT_CLASS_GROUPS if tracking.class_groups is None else tracking.class_groups
        return cls(
            high_confidence=high,
            low_confidence=min(tracking.low_confidence, high),
            match_iou=tracking.match_iou,
            confirm_hits=tracking.confirm_hits,
            confirm_s=tracking.confirm_s,
            lost_after_s=tracking.lost_after_s,
            max_hidden_s=tracking.max_hidden_s,
            kinds=class_kinds(groups, labels),
        )

    def kind_of(self, class_ids: np.ndarray) -> np.ndarray:
        """The kind of each class id: what a track and a box must share to match."""
        if not self.kinds:
            return class_ids
        kinds: np.ndarray = np.asarray(self.kinds, dtype=np.int64)[class_ids]
        return kinds


@dataclass(frozen=True)
class Sighting:
    """A track's last box seen whole: where and when, how fast it moved, how tall it was."""

    t_s: float
    centre: tuple[float, float]
    velocity: tuple[float, float]  # px/s, the motion filter's at that moment
    height: float


@dataclass
class Track:
    """One tracked object. `box` is the last box it was seen with, as detected; `class_id`
    the label with the most confidence summed over its boxes."""

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
    votes: dict[int, float] = field(default_factory=dict)  # class id -> confidence summed
    at_edge: bool = True  # last seen touching the picture's edge (or its size unknown)
    width: float = 0.0  # its box's size, averaged over the last second or so (px)
    height: float = 0.0
    sighting: Sighting | None = None  # the last time it was seen whole

    @property
    def dwell_s(self) -> float:
        return self.last_seen_s - self.first_seen_s

    def vote(self, class_id: int, confidence: float) -> None:
        """Count a box's label towards the object's."""
        self.votes[class_id] = self.votes.get(class_id, 0.0) + confidence
        if class_id != self.class_id and self.votes[class_id] > self.votes.get(self.class_id, 0):
            self.class_id = class_id


@dataclass(frozen=True)
class TrackerUpdate:
    """What one frame did to the tracks."""

    seen: list[Track]  # tracks matched to a box in this frame (tentative ones too)
    confirmed: list[Track]  # became objects in this frame (also in `seen`)
    ended: list[Track]  # confirmed tracks that are gone (unseen for lost_after_s)
    discarded: list[Track]  # tentative tracks that were not seen again: never objects


def touches_edge(
    boxes: np.ndarray, frame_hw: tuple[int, int] | None, velocities: np.ndarray | None = None
) -> np.ndarray:
    """For each of `boxes` (N, 4), whether it reaches (nearly) the edge of a picture of
    `frame_hw`, through which an object leaves; all True when the size is not known. With
    `velocities` (N, 2, px/s): an edge the box is moving in from, at INWARD_HEIGHTS_S of
    its height a second or more, does not count (the object is coming into view).

    >>> boxes = np.array([[300, 100, 340, 200], [630, 100, 640, 200]])
    >>> touches_edge(boxes, (360, 640))
    array([False,  True])
    >>> touches_edge(boxes, (360, 640), np.array([[0, 0], [-50, 0]]))
    array([False, False])
    >>> touches_edge(np.zeros((1, 4)), None)
    array([ True])
    """
    if frame_hw is None:
        return np.ones(len(boxes), dtype=bool)
    h, w = frame_hw
    margin = EDGE_SHARE * max(h, w)
    near = np.stack(
        [boxes[:, 0] <= margin, boxes[:, 1] <= margin,
         boxes[:, 2] >= w - margin, boxes[:, 3] >= h - margin], axis=1,
    )  # fmt: skip
    if velocities is not None:
        speed = INWARD_HEIGHTS_S * (boxes[:, 3] - boxes[:, 1])
        vx, vy = velocities[:, 0], velocities[:, 1]
        inward = np.stack([vx > speed, vy > speed, vx < -speed, vy < -speed], axis=1)
        near &= ~inward
    return np.asarray(near.any(axis=1))


def recoveries(
    expected: np.ndarray,
    unseen_s: np.ndarray,
    kinds: np.ndarray,
    detections: Detections,
    detection_kinds: np.ndarray,
    free: list[int],
) -> list[tuple[int, int]]:
    """Hidden tracks that reappear: (row of `expected`, detection index) pairs, one-to-one,
    the nearest first. `expected` holds, per track, where its motion would have taken it
    by now and its size when last seen whole (cx, cy, height, speed in px/s); `unseen_s`
    how long each has been out of sight. A free detection of the same kind may continue a
    track when its centre is within reach of the expected centre (RECOVER_REACH of the
    height, plus half the way the track would have gone since: it may have slowed or
    turned) and its height fits (the part that shows as it comes out may be narrow, not
    short)."""
    if not len(expected) or not free:
        return []
    columns = np.array(free, dtype=np.int64)
    boxes = detections.xyxy[columns]
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
    heights = boxes[:, 3] - boxes[:, 1]
    track_heights = np.maximum(expected[:, 2], 1.0)
    reach = RECOVER_REACH * track_heights + 0.5 * expected[:, 3] * unseen_s
    distance = np.linalg.norm(centres[None, :, :] - expected[:, None, :2], axis=2)
    ratio = heights[None, :] / track_heights[:, None]
    fits = (
        (distance <= reach[:, None])
        & (ratio >= RECOVER_HEIGHTS[0])
        & (ratio <= RECOVER_HEIGHTS[1])
        & (kinds[:, None] == detection_kinds[columns][None, :])
    )
    if not fits.any():
        return []
    rows, cols = linear_sum_assignment(np.where(fits, distance / reach[:, None], 1e6))
    return [(int(r), int(columns[c])) for r, c in zip(rows, cols, strict=True) if fits[r, c]]


def _diagonals(values: np.ndarray) -> np.ndarray:
    """(N, K) -> N diagonal K x K matrices."""
    n, k = values.shape
    out = np.zeros((n, k, k))
    out[:, range(k), range(k)] = values
    return out


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
        self.cov = np.concatenate([self.cov, _diagonals(std**2)])

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
        innovation_cov = cov[:, :4, :4] + _diagonals(r)
        gain = cov[:, :, :4] @ np.linalg.inv(innovation_cov)
        self.mean[rows] = mean + (gain @ (z - mean[:, :4])[:, :, None])[:, :, 0]
        self.cov[rows] = cov - gain @ cov[:, :4, :]

    def hold_size(self, rows: np.ndarray) -> None:
        """Stop the boxes `rows` growing or shrinking: a box that was not seen keeps its
        size (an object going behind something shrinks to its visible part, and that
        shrinking must not be carried on)."""
        self.mean[rows, 6:8] = 0.0

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

    def update(
        self, t_s: float, detections: Detections, frame_hw: tuple[int, int] | None = None
    ) -> TrackerUpdate:
        """`frame_hw`: the picture's size, which tells an object that left through its edge
        from one hidden inside it (None: every object is taken to be at the edge)."""
        previous_s = self._last_s
        if previous_s is not None:
            self._filters.predict(t_s - previous_s)
        self._last_s = t_s
        expired = self._expire(t_s, previous_s)
        matches, unclaimed = self._associate(detections, t_s, previous_s)
        unseen = [i for i in range(len(self._tracks)) if i not in matches]
        self._filters.hold_size(np.array(unseen, dtype=np.int64))
        seen, confirmed = self._apply(matches, detections, t_s, frame_hw)
        discarded = [t for t in expired if not t.confirmed]
        for track in self._start(unclaimed, detections, t_s, frame_hw):
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

    def _expire(self, t_s: float, previous_s: float | None) -> list[Track]:
        """Remove the tracks unseen for longer than they may be, whatever this frame shows:
        the outcome does not depend on whether the frames in between were dropped. A
        tentative track is given at least one frame after its last: when frames are
        dropped, the next one looked at may come later than its gap allows."""
        expired = [
            t for t in self._tracks
            if t_s - t.last_seen_s > self._may_be_unseen_s(t)
            and (t.confirmed or previous_s is None or t.last_seen_s < previous_s)
        ]  # fmt: skip
        if expired:
            gone = {id(t) for t in expired}
            self._keep([i for i, t in enumerate(self._tracks) if id(t) not in gone])
        return expired

    def _may_be_unseen_s(self, track: Track) -> float:
        """A tentative track may miss a frame or two (a detector's flicker) but no more; an
        object last seen at the picture's edge has left after lost_after_s; one last seen
        inside it may be behind something, for up to max_hidden_s."""
        s = self.settings
        if not track.confirmed:
            return TENTATIVE_GAP_S
        return s.lost_after_s if track.at_edge else max(s.lost_after_s, s.max_hidden_s)

    def _associate(
        self, detections: Detections, t_s: float, previous_s: float | None
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
            rows: list[int], boxes: np.ndarray, free: list[int], min_iou: float | np.ndarray
        ) -> set[int]:
            """Match `rows` to the detections `free`; the detections taken."""
            rows = [r for r in rows if r not in matches]
            classes = np.array([self._tracks[r].class_id for r in rows], dtype=np.int64)
            pairs = match_by_iou(boxes[rows], s.kind_of(classes), detections.xyxy[free],
                                 s.kind_of(detections.class_id[free]), min_iou)  # fmt: skip
            for r, c, _ in pairs:
                matches[rows[r]] = free[c]
            return {free[c] for _, c, _ in pairs}

        # Round 1 (ByteTrack's two rounds in one): the predicted boxes of confirmed tracks
        # (seen or lost) against confident boxes, and those of the tracks seen in the last
        # frame against weak boxes too, which must overlap them more. One assignment, so
        # that a track whose own box came out weak this frame does not take a confident
        # box beside it, of someone else coming into view, leaving its own unused.
        recent = [i for i in established if self._tracks[i].last_seen_s == previous_s]
        # The least IoU per pair, a row per established track (none is matched yet).
        bars = np.full((len(established), len(high) + len(low)), s.match_iou)
        bars[:, len(high) :] = np.where(
            np.isin(established, recent)[:, None], s.low_match_iou, np.inf
        )
        taken = assign(established, predicted, high + low, bars)
        high = [d for d in high if d not in taken]
        # Then the tentative tracks, against the confident boxes left.
        high = [d for d in high if d not in assign(tentative, predicted, high, s.match_iou)]
        # Round 1b (OC-SORT's recovery): a track whose prediction missed, because the
        # object turned or stopped during a gap, by the box it was last seen with.
        high = [d for d in high if d not in assign(established, last_seen, high, s.match_iou)]
        # Round 1c: an object hidden for a while (behind a pillar, another person) comes
        # back where its motion was taking it, though no box overlaps its prediction any
        # more (its size and speed were misjudged as it went out of sight). Only after a
        # frame unseen, or RECOVER_AFTER_S: a track that missed just now may be passing
        # behind another object, whose box must not be taken for it.
        before = t_s if previous_s is None else previous_s
        missed = [
            i for i in established
            if i not in matches
            and (self._tracks[i].last_seen_s < before
                 or t_s - self._tracks[i].last_seen_s >= RECOVER_AFTER_S)
        ]  # fmt: skip
        kinds = s.kind_of(np.array([self._tracks[i].class_id for i in missed], dtype=np.int64))
        unseen_s = np.array([t_s - self._tracks[i].last_seen_s for i in missed])
        expected = np.array([self._expected(i, t_s) for i in missed]).reshape(-1, 4)
        for row, d in recoveries(
            expected, unseen_s, kinds, detections, s.kind_of(detections.class_id), high
        ):
            matches[missed[row]] = d
            high.remove(d)
        return matches, high

    def _apply(
        self,
        matches: dict[int, int],
        detections: Detections,
        t_s: float,
        frame_hw: tuple[int, int] | None,
    ) -> tuple[list[Track], list[Track]]:
        """Update the matched tracks; (seen, newly confirmed)."""
        seen, confirmed = [], []
        rows = sorted(matches)
        columns = [matches[r] for r in rows]
        self._filters.update(np.array(rows, dtype=np.int64), detections.xyxy[columns])
        # An object coming in from the edge, once moving, counts as inside the picture.
        edge = touches_edge(detections.xyxy[columns], frame_hw, self._filters.mean[rows, 4:6])
        at_edge = dict(zip(rows, edge.tolist(), strict=True))
        gaps = {}  # row -> seconds since the track was seen before
        for row, d in matches.items():
            track = self._tracks[row]
            gaps[row] = t_s - track.last_seen_s
            track.detection = d
            track.box = detections.xyxy[d].copy()
            track.confidence = float(detections.confidence[d])
            track.best_confidence = max(track.best_confidence, track.confidence)
            track.vote(int(detections.class_id[d]), track.confidence)
            track.at_edge = at_edge[row]
            track.last_seen_s = t_s
            track.hits += 1
            if not track.confirmed and self._is_confirmed(track):
                track.confirmed = True
                confirmed.append(track)
            seen.append(track)
        for row in rows:
            self._sight(self._tracks[row], self._filters.mean[row], t_s, gaps[row])
        return seen, confirmed

    @staticmethod
    def _sight(track: Track, state: np.ndarray, t_s: float, step_s: float) -> None:
        """Remember the box if the object shows whole in it (as wide and as tall as it has
        lately been, within WHOLE_SHARE): as it goes behind something, its box shrinks to
        the part that shows, and its centre and speed with it. `step_s`: the time since
        it was seen before, for the running size."""
        x1, y1, x2, y2 = track.box.tolist()
        width, height = x2 - x1, y2 - y1
        if not track.width:
            track.width, track.height = width, height
        if width >= WHOLE_SHARE * track.width and height >= WHOLE_SHARE * track.height:
            velocity = (float(state[4]), float(state[5]))
            track.sighting = Sighting(t_s, ((x1 + x2) / 2, (y1 + y2) / 2), velocity, height)
        weight = 1.0 - math.exp(-step_s / SIZE_MEMORY_S)
        track.width += weight * (width - track.width)
        track.height += weight * (height - track.height)

    def _expected(self, row: int, t_s: float) -> tuple[float, float, float, float]:
        """Where track `row` would be by `t_s` had it kept the motion it had when last seen
        whole, with that height and speed: (cx, cy, height, speed)."""
        sighting = self._tracks[row].sighting
        if sighting is None:  # never seen whole: the motion filter's guess
            cx, cy, _, h, vx, vy = self._filters.mean[row, :6]
            return float(cx), float(cy), float(h), float(np.hypot(vx, vy))
        elapsed = t_s - sighting.t_s
        (cx, cy), (vx, vy) = sighting.centre, sighting.velocity
        return cx + vx * elapsed, cy + vy * elapsed, sighting.height, float(np.hypot(vx, vy))

    def _start(
        self,
        unclaimed: list[int],
        detections: Detections,
        t_s: float,
        frame_hw: tuple[int, int] | None,
    ) -> list[Track]:
        """New tracks from the confident boxes nothing claimed."""
        if not unclaimed:
            return []
        self._filters.add(detections.xyxy[unclaimed])
        at_edge = touches_edge(detections.xyxy, frame_hw)
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
                votes={int(detections.class_id[d]): confidence},
                at_edge=bool(at_edge[d]),
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
