"""ONNX Runtime's CPU provider against OpenVINO, float and int8, on the same models and
the same frames, side by side in one run.

For each model: the int8 model `streamer quantize` makes (calibrated on the clip), then
rounds in which every variant (ONNX Runtime CPU or OpenVINO, float or int8) runs the same
real frames back to back for `--seconds`, as the pipeline runs a model (`workers`
sessions at once, batch 1). Each ratio is taken within its round against ONNX Runtime's
float; the median over rounds is printed, since this machine's speed drifts. The int8
model's agreement with the float one (share of float detections matched) is
`streamer quantize`'s, measured with ONNX Runtime.

    python -m benchmarks.providers --model ../shared/assets/models/yolov8n.onnx \\
        --model ../shared/assets/models/yolox_nano.onnx \\
        --clip ../shared/assets/videos/one-by-one-person-detection.mp4
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.plain import batches_per_s
from streamer.models import Model
from streamer.models.quantize import quantize_and_check, sample_tensors
from streamer.models.sessions import PROVIDERS

VARIANTS = (("cpu", "float"), ("openvino", "float"), ("cpu", "int8"), ("openvino", "int8"))


def measure(
    model_path: Path, clip: Path, rounds: int, seconds: float, work: Path
) -> dict[str, Any]:
    int8_path = work / f"{model_path.stem}.int8.onnx"
    report = quantize_and_check(model_path, int8_path, [clip])
    paths = {"float": model_path, "int8": int8_path}
    models = {(p, q): Model.load(paths[q], providers=(p,)) for p, q in VARIANTS}
    for (provider, _), model in models.items():
        if model.providers[0] != PROVIDERS[provider]:
            raise SystemExit(f"{provider} is not usable here (got {model.providers[0]})")
    batches = [t[None] for t in sample_tensors(models["cpu", "float"], [clip], 32)]
    runs: dict[str, list[float]] = {f"{p} {q}": [] for p, q in VARIANTS}
    for _ in range(rounds):
        for (provider, precision), model in models.items():
            runs[f"{provider} {precision}"].append(batches_per_s(model, batches, seconds))
    base = runs["cpu float"]
    return {
        "model": model_path.name,
        "input_hw": list(models["cpu", "float"].input_hw_for((720, 1280))),
        "int8_matched_fraction": round(report.agreement.matched_fraction, 3),
        "int8_float_boxes": report.agreement.float_boxes,
        "variants": {
            name: {
                "fps": round(statistics.median(fps), 1),
                "vs_cpu_float": round(
                    statistics.median(f / b for f, b in zip(fps, base, strict=True)), 3
                ),
            }
            for name, fps in runs.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="each variant, each round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(m.resolve(), args.clip, args.rounds, args.seconds, Path(tmp))
                   for m in args.model]  # fmt: skip
    print("| model | input | ORT CPU float | OpenVINO float | ORT CPU int8 | OpenVINO int8 "
          "| int8 detections matched |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in results:
        cells = [f"{v['fps']} f/s ({v['vs_cpu_float']:.2f}x)" for v in r["variants"].values()]
        matched = (f"{r['int8_matched_fraction']:.0%} of {r['int8_float_boxes']}"
                   if r["int8_float_boxes"] else "- (no detections)")  # fmt: skip
        hw = "x".join(map(str, r["input_hw"]))
        print(f"| {r['model']} | {hw} | " + " | ".join(cells) + f" | {matched} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
