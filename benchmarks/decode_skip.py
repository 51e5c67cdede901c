"""What skipping frames in the decoder saves: decoding speed with skip_frames none, nonref
and nonkey, side by side on one clip (the `skip_frames` source option).

    python -m benchmarks.decode_skip ../shared/assets/videos/one-by-one-person-detection.mp4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Literal

import av

SkipFrame = Literal["DEFAULT", "NONREF", "NONKEY"]
MODES: dict[str, SkipFrame] = {"none": "DEFAULT", "nonref": "NONREF", "nonkey": "NONKEY"}


def decode(clip: Path, skip: SkipFrame) -> tuple[int, float]:
    """Frames decoded (converted to BGR, as a source does) and seconds taken."""
    started = time.perf_counter()
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"  # as for a live source
        stream.codec_context.skip_frame = skip
        frames = sum(1 for f in container.decode(stream) if f.to_ndarray(format="bgr24").size)
    return frames, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    args = parser.parse_args()
    base_frames, base_s = decode(args.clip, MODES["none"])
    print(f"{'skip_frames':<12}{'frames':>8}{'seconds':>9}{'CPU vs none':>13}")
    for name, mode in MODES.items():
        frames, seconds = (base_frames, base_s) if name == "none" else decode(args.clip, mode)
        print(f"{name:<12}{frames:>8}{seconds:>9.2f}{seconds / base_s:>13.2f}")


if __name__ == "__main__":
    main()
