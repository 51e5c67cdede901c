"""What seeing costs: offline frames per second of the demo pipeline (4 copies of the
demo clip, zones, a line, object events) with nobody looking, with someone looking at
every source once a second (the preview page), and while recording, side by side: the
modes alternate, each run `--rounds` times, the median reported with its ratio to
nobody looking.

    python -m benchmarks.preview [--sources 4] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
from pathlib import Path

from streamer import Pipeline
from streamer.config.loader import parse_config
from streamer.config.schema import PipelineConfig

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "sample_videos" / "parking.mp4"
MODEL = REPO / "models" / "demo-detector.onnx"
MODES = ("nobody looks", "page open", "recording")
LOOK_EVERY_S = 1.0  # the page's refresh


def config(sources: int) -> PipelineConfig:
    """Object, zone and line events (the default `emit`) over `sources` copies of the clip."""
    return parse_config(
        {
            "name": "preview-bench",
            "sources": [{"id": f"cam{i}", "uri": str(CLIP)} for i in range(sources)],
            "model": {"path": str(MODEL), "confidence": 0.35},
            "zones": [
                {"name": "corner", "polygon": [[-40, 200], [300, 200], [300, 400], [-40, 400]]}
            ],
            "lines": [{"name": "midline", "points": [[300, 0], [300, 360]]}],
            "sink": "none",
        },
        "benchmark",
    )


def one_run(sources: int, mode: str, folder: Path) -> float:
    """Frames processed per second of the run's wall time."""
    record = folder / "out.mp4" if mode == "recording" else None
    pipeline = Pipeline.from_config(config(sources), on_event=lambda _e: None, record=record)
    done = threading.Event()

    def look() -> None:
        while not done.wait(LOOK_EVERY_S):
            for source in pipeline.source_ids:
                pipeline.snapshot(source)

    looker = threading.Thread(target=look) if mode == "page open" else None
    pipeline.start()
    if looker is not None:
        looker.start()
    try:
        pipeline.join()
    finally:
        done.set()
        if looker is not None:
            looker.join()
    stats = pipeline.stats()
    return float(stats["frames"]["processed"]) / float(stats["wall_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    fps: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for mode in MODES:
                fps[mode].append(one_run(args.sources, mode, Path(folder)))
    medians = {mode: statistics.median(values) for mode, values in fps.items()}
    base = medians["nobody looks"]
    print(f"{args.sources} sources of {CLIP.name}, offline, median of {args.rounds} runs:")
    for mode in MODES:
        runs = ", ".join(f"{v:.1f}" for v in fps[mode])
        print(f"  {mode:13s} {medians[mode]:7.1f} frames/s  x{medians[mode] / base:.2f}  ({runs})")
    if args.json is not None:
        args.json.write_text(json.dumps({"fps": fps, "median": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
