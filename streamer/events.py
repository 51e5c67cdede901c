"""Events of the Redis contract (DESIGN.md section 6, schema version 1).

`EventFactory` builds the event JSON for one pipeline run. It numbers events per
source with `seq` 1, 2, 3, ... so that a consumer can see a gap; it lives on the
postprocessing thread, the only place events are made, so the numbering needs no lock.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from streamer.messages import Detections, Event, Frame, SourceStatus
from streamer.rules import Occurrence

SCHEMA_VERSION = 1
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 characters, sortable by time.

    Written here rather than taken from a package: it is eight lines.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _round(x: float, digits: int = 3) -> float:
    return round(float(x), digits) + 0.0  # + 0.0 turns -0.0 into 0.0


class EventFactory:
    def __init__(self, pipeline: str, run_id: str, labels: tuple[str, ...]) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self._labels = labels
        self._seq: Counter[str] = Counter()

    def _base(self, source_id: str, type_: str, frame: Frame | None) -> dict[str, Any]:
        self._seq[source_id] += 1
        return {
            "schema": SCHEMA_VERSION,
            "id": new_ulid(),
            "run": self.run_id,
            "seq": self._seq[source_id],
            "type": type_,
            "pipeline": self.pipeline,
            "source": source_id,
            "frame": None
            if frame is None
            else {
                "index": frame.index,
                "pts": None if frame.pts_s is None else _round(frame.pts_s),
                "captured_at": _round(frame.captured_at),
            },
            "emitted_at": _round(time.time()),
            "zone": None,
            "line": None,
            "direction": None,
        }

    def objects(
        self, detections: Detections, track_ids: list[int | None] | None = None
    ) -> list[dict[str, Any]]:
        ids = track_ids if track_ids is not None else [None] * len(detections)
        return [
            {
                "track_id": track_id,
                "label": self._labels[int(c)],
                "class_id": int(c),
                "confidence": _round(s),
                "bbox": [_round(v, 1) for v in box],
            }
            for box, s, c, track_id in zip(
                detections.xyxy.tolist(),
                detections.confidence.tolist(),
                detections.class_id.tolist(),
                ids,
                strict=True,
            )
        ]

    def detections(
        self, frame: Frame, detections: Detections, track_ids: list[int | None] | None = None
    ) -> Event:
        """Every box of a frame; `track_ids`: per box, its object's id (None: no object)."""
        payload = self._base(frame.source_id, "detections", frame)
        payload["objects"] = self.objects(detections, track_ids)
        return Event(frame.source_id, "detections", payload, frame.captured_ns)

    def occurrence(self, occurrence: Occurrence, timed: bool = True) -> Event:
        """An object event; `timed`: its frame's latency counts (not for the events a
        source's end causes after its last frame)."""
        frame = occurrence.frame
        payload = self._base(frame.source_id, occurrence.type, frame)
        o = occurrence.object
        payload["object"] = {
            "track_id": o.track_id,
            "label": self._labels[o.class_id],
            "class_id": o.class_id,
            "confidence": _round(o.confidence),
            "bbox": [_round(max(v, 0.0), 1) for v in o.bbox],
            "first_seen": _round(o.first_seen_at),
            "last_seen": _round(o.last_seen_at),
        }
        if o.dwell_s is not None:
            payload["object"]["dwell_s"] = _round(o.dwell_s)
        payload["zone"] = occurrence.zone
        payload["line"] = occurrence.line
        payload["direction"] = occurrence.direction
        captured_ns = frame.captured_ns if timed else None
        return Event(frame.source_id, occurrence.type, payload, captured_ns)

    def source_status(self, status: SourceStatus) -> Event:
        payload = self._base(status.source_id, "source_status", None)
        payload["status"] = status.status
        payload["emitted_at"] = _round(status.at)
        if status.detail is not None:
            payload["detail"] = status.detail
        return Event(status.source_id, "source_status", payload, None)
