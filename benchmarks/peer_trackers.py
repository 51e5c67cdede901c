"""The open trackers of Roboflow's `trackers` package on the same detections as streamer's
tracker, and every tracker scored by the package's evaluator (TrackEval's CLEAR, Identity
and HOTA). Run by benchmarks/tracker_quality.py with the Python of a separate virtual
environment (benchmarks/requirements-trackers.txt); it does not import streamer.

    PEER_PYTHON benchmarks/peer_trackers.py WORK_DIR

WORK_DIR holds `sequences.json` ({sequence: {"fps": ..., "frames": ...}}), `det/<seq>.txt`
(MOT detections: frame, -1, left, top, width, height, confidence), `gt/<seq>/gt/gt.txt`
and `trackers/<name>/<seq>.txt` for trackers already run. Writes each peer's tracks
beside them and prints one JSON object: {tracker: {sequence or "all": metrics}}. If it
holds `counted.json` (the same, with each sequence's "confidence"), the peers also run
on `counted/det/<seq>.txt` and write `counted/<peer>/<seq>.txt`, to be counted, not
scored (there is no ground truth for them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from trackers import BoTSORTTracker, ByteTrackTracker, OCSORTTracker, SORTTracker
from trackers.eval import evaluate_mot_sequences

LOST_S = 1.0  # as streamer's lost_after_s: 30 frames at 30 fps in the package's terms


def peers(fps: float, confidence: float) -> dict[str, Any]:
    """Each tracker with its defaults, but told the frame rate, and with its confidence
    thresholds at the pipeline's detection threshold (their defaults suit MOT17's
    detector, whose scores run higher)."""
    buffer = round(30 * LOST_S)
    return {
        "sort": SORTTracker(lost_track_buffer=buffer, frame_rate=fps,
                            track_activation_threshold=confidence),
        "bytetrack": ByteTrackTracker(lost_track_buffer=buffer, frame_rate=fps,
                                      track_activation_threshold=confidence,
                                      high_conf_det_threshold=confidence),
        "ocsort": OCSORTTracker(lost_track_buffer=buffer, frame_rate=fps,
                                high_conf_det_threshold=confidence),
        "botsort": BoTSORTTracker(lost_track_buffer=buffer, frame_rate=fps,
                                  track_activation_threshold=confidence,
                                  high_conf_det_threshold=confidence, enable_cmc=False),
    }  # fmt: skip


def read_detections(path: Path, frames: int) -> list[sv.Detections]:
    rows = np.loadtxt(path, delimiter=",", ndmin=2) if path.stat().st_size else np.zeros((0, 7))
    out = []
    for frame in range(1, frames + 1):
        mine = rows[rows[:, 0] == frame]
        xyxy = np.column_stack([mine[:, 2], mine[:, 3], mine[:, 2] + mine[:, 4],
                                mine[:, 3] + mine[:, 5]]).reshape(-1, 4)  # fmt: skip
        out.append(sv.Detections(xyxy=xyxy.astype(np.float32),
                                 confidence=mine[:, 6].astype(np.float32),
                                 class_id=np.zeros(len(mine), int)))  # fmt: skip
    return out


def run_peer(tracker: Any, detections: list[sv.Detections], fps: float) -> list[str]:
    lines = []
    for i, d in enumerate(detections):
        tracked = tracker.update(d, timestamp=i / fps)
        for (x1, y1, x2, y2), track_id in zip(tracked.xyxy, tracked.tracker_id, strict=True):
            if track_id >= 0:
                lines.append(
                    f"{i + 1},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,-1,-1,-1"
                )
    return lines


def scores(result: Any) -> dict[str, float]:
    clear, identity, hota = result.CLEAR, result.Identity, result.HOTA
    return {
        "MOTA": round(clear.MOTA, 4), "IDF1": round(identity.IDF1, 4),
        "HOTA": round(hota.HOTA, 4), "IDSW": int(clear.IDSW), "FP": int(clear.CLR_FP),
        "FN": int(clear.CLR_FN), "Frag": int(clear.Frag),
    }  # fmt: skip


def main() -> None:
    work = Path(sys.argv[1])
    confidence = float(sys.argv[2]) if len(sys.argv) > 2 else 0.35
    sequences = json.loads((work / "sequences.json").read_text())
    for name, info in sequences.items():
        detections = read_detections(work / "det" / f"{name}.txt", info["frames"])
        for peer, tracker in peers(info["fps"], confidence).items():
            folder = work / "trackers" / peer
            folder.mkdir(parents=True, exist_ok=True)
            lines = run_peer(tracker, detections, info["fps"])
            (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    counted = work / "counted.json"
    for name, info in (json.loads(counted.read_text()) if counted.is_file() else {}).items():
        detections = read_detections(work / "counted" / "det" / f"{name}.txt", info["frames"])
        for peer, tracker in peers(info["fps"], info["confidence"]).items():
            lines = run_peer(tracker, detections, info["fps"])
            (work / "counted" / peer).mkdir(parents=True, exist_ok=True)
            (work / "counted" / peer / f"{name}.txt").write_text("\n".join(lines) + "\n")
    results = {}
    for folder in sorted((work / "trackers").iterdir()):
        evaluated = evaluate_mot_sequences(
            work / "gt", folder, metrics=["CLEAR", "HOTA", "Identity"]
        )
        results[folder.name] = {name: scores(r) for name, r in evaluated.sequences.items()}
        results[folder.name]["all"] = scores(evaluated.aggregate)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
