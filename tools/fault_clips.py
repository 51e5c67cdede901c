"""Makes camera-fault clips from real footage: a clip whose picture goes wrong from a
known time and comes right again, one fault per clip, for the camera-health tests and the
threshold measurements in docs/operations.md.

    python -m tools.fault_clips SOURCE.mp4 OUT_DIR [--loops N] [--onset S] [--end S]

Each fault is what happens to real cameras: `dark` (an IR lamp or the exposure fails:
the picture at 30 % of its light), `blur` (out of focus, fogged: a Gaussian blur of 1/200
of the width), `frozen` (the encoder repeats one picture), `covered` (three quarters of
the picture behind a hand or tape), `moved` (knocked: turned 6 degrees and shifted by 6 %
and 4 %), `black` (no picture). `clean` is the footage untouched.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from streamer.enums import StrEnum
from streamer.events.event import HealthCondition


class Fault(StrEnum):
    CLEAN = "clean"
    DARK = "dark"
    BLUR = "blur"
    FROZEN = "frozen"
    COVERED = "covered"
    MOVED = "moved"
    BLACK = "black"


# The condition each fault must raise, and only it.
RAISES: dict[Fault, HealthCondition | None] = {
    Fault.CLEAN: None,
    Fault.DARK: HealthCondition.BRIGHTNESS,
    Fault.BLUR: HealthCondition.BLUR,
    Fault.FROZEN: HealthCondition.FROZEN,
    Fault.COVERED: HealthCondition.COVERED,
    Fault.MOVED: HealthCondition.MOVED,
    Fault.BLACK: HealthCondition.BLACKOUT,
}


def frames(path: Path, loops: int) -> Iterator[tuple[float, np.ndarray, Fraction]]:
    """(time, BGR picture, frame rate) of `path`, played `loops` times end to end."""
    offset = 0.0
    for _ in range(loops):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or Fraction(25)
            t = 0.0
            for i, frame in enumerate(container.decode(stream)):
                t = offset + i / float(rate)
                yield t, frame.to_ndarray(format="bgr24"), rate
            offset = t + 1 / float(rate)


def apply(fault: Fault, picture: np.ndarray, held: list[np.ndarray]) -> np.ndarray:
    """`picture` with `fault`; `held`: the frozen picture, once there is one."""
    h, w = picture.shape[:2]
    if fault is Fault.DARK:
        return (picture * 0.3).astype(np.uint8)
    if fault is Fault.BLUR:
        return np.asarray(cv2.GaussianBlur(picture, (0, 0), w / 200))
    if fault is Fault.FROZEN:
        if not held:
            held.append(picture)
        return held[0]
    if fault is Fault.COVERED:
        out = picture.copy()
        out[:, : int(w * 0.75)] = (35, 38, 40)
        return out
    if fault is Fault.MOVED:
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), 6, 1.0)
        turn[:, 2] += (0.06 * w, 0.04 * h)
        return np.asarray(cv2.warpAffine(picture, turn, (w, h), borderMode=cv2.BORDER_REFLECT))
    if fault is Fault.BLACK:
        return np.zeros_like(picture)
    return picture


def make_fault_clips(
    source: Path,
    folder: Path,
    onset_s: float,
    end_s: float,
    loops: int = 1,
    length_s: float | None = None,
    faults: Iterable[Fault] = tuple(Fault),
) -> dict[Fault, Path]:
    """`source` (played `loops` times, cut at `length_s`) once per fault, the fault from
    `onset_s` to `end_s`, as H.264 files `folder/SOURCE.FAULT.mp4`; read once for all."""
    paths = {fault: folder / f"{source.stem}.{fault}.mp4" for fault in faults}
    held: dict[Fault, list[np.ndarray]] = {fault: [] for fault in paths}
    containers = {fault: av.open(str(path), "w") for fault, path in paths.items()}
    streams: dict[Fault, Any] = {}
    try:
        for t, picture, rate in frames(source, loops):
            if length_s is not None and t >= length_s:
                break
            for fault, container in containers.items():
                stream = streams.get(fault)
                if stream is None:
                    stream = streams[fault] = container.add_stream("libx264", rate=rate)
                    stream.height, stream.width = picture.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"preset": "ultrafast", "g": "10", "crf": "23"}
                shown = apply(fault, picture, held[fault]) if onset_s <= t < end_s else picture
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(shown), format="bgr24")
                container.mux(stream.encode(frame))
        for fault, stream in streams.items():
            containers[fault].mux(stream.encode())
    finally:
        for container in containers.values():
            container.close()
    return paths


def make_scene_change(first: Path, second: Path, out: Path, first_s: float) -> Path:
    """The first `first_s` seconds of `first`, then all of `second` (scaled to the same
    size and played at the same rate): a camera whose scene changes."""
    with av.open(str(out), "w") as container:
        stream = None
        size = (0, 0)
        for path, until_s in ((first, first_s), (second, float("inf"))):
            for t, picture, rate in frames(path, 1):
                if t >= until_s:
                    break
                if stream is None:
                    stream = container.add_stream("libx264", rate=rate)
                    stream.height, stream.width = picture.shape[:2]
                    size = (stream.width, stream.height)
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"preset": "ultrafast", "g": "10", "crf": "23"}
                picture = np.asarray(cv2.resize(picture, size, interpolation=cv2.INTER_AREA))
                frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
                container.mux(stream.encode(frame))
        if stream is not None:
            container.mux(stream.encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--onset", type=float, default=15.0, help="seconds into the clip")
    parser.add_argument("--end", type=float, default=35.0, help="seconds into the clip")
    parser.add_argument("--length", type=float, help="cut the clips at this many seconds")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    clips = make_fault_clips(
        args.source, args.out_dir, args.onset, args.end, args.loops, args.length
    )
    for path in clips.values():
        print(path)


if __name__ == "__main__":
    main()
