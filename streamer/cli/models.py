"""`streamer inspect` and `streamer quantize`: what a model file is, and an int8 copy of it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from streamer.cli.exits import fail_usage
from streamer.errors import StreamerError

log = logging.getLogger("streamer")


@click.command()
@click.argument("model_file", type=click.Path(path_type=Path))
def inspect(model_file: Path) -> None:
    """Show a model's inputs, outputs, recognised family and labels."""
    from streamer.models import Model
    from streamer.models.sessions import open_session

    try:
        # The inputs and outputs first, from a bare session: they are what to look at
        # when the family is not recognised.
        session = open_session(model_file, ["cpu"], threads=1)
        click.echo(f"model: {model_file}")
        for i in session.get_inputs():
            click.echo(f"input:  {i.name} {i.type} {i.shape}")
        for o in session.get_outputs():
            click.echo(f"output: {o.name} {o.type} {o.shape}")
        model = Model.load(model_file, providers=("cpu",), threads=1, workers=1)
    except StreamerError as exc:
        fail_usage(str(exc))
    spec = model.spec
    click.echo(f"family: {spec.family}")
    shape = (
        f"{spec.input_hw[0]}x{spec.input_hw[1]}"
        if spec.input_hw
        else f"dynamic (long side {spec.imgsz}, multiple of {spec.stride})"
    )
    click.echo(f"input size: {shape}; batch: {spec.batch or 'dynamic'}")
    click.echo(
        f"pre-processing: {'RGB' if spec.rgb else 'BGR'}, "
        f"{'/255' if spec.scale != 1 else '0..255'}, "
        f"{'centred' if spec.centered else 'top-left'} letterbox"
    )
    click.echo(f"labels ({spec.num_classes}): {', '.join(spec.labels)}")


@click.command()
@click.argument("model_file", type=click.Path(path_type=Path))
@click.option(
    "--clip",
    "clips",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A video of the scenes the model will see; repeat for more. Frames are spread over all.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Default: MODEL_FILE's name + .int8.onnx.",
)
@click.option("--calibration-frames", type=click.IntRange(1, 10_000), default=64, show_default=True)
@click.option(
    "--check-frames",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Other frames, on which both models are compared.",
)
@click.option(
    "--method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default="minmax",
    show_default=True,
    help="How activation ranges are calibrated.",
)
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.25, show_default=True)
@click.option("--json", "json_file", type=click.Path(path_type=Path), help="Write the report here.")
def quantize(
    model_file: Path,
    clips: tuple[Path, ...],
    output: Path | None,
    calibration_frames: int,
    check_frames: int,
    method: str,
    confidence: float,
    json_file: Path | None,
) -> None:
    """Make an int8 (QDQ) copy of MODEL_FILE, calibrated on frames of your own clips, and
    report its speed and how its detections agree with the float model's."""
    from streamer.models.quantize import MATCH_IOU, MIN_AGREEMENT, quantize_and_check

    output = output or model_file.with_name(f"{model_file.stem}.int8.onnx")
    try:
        report = quantize_and_check(
            model_file,
            output,
            list(clips),
            calibration_frames=calibration_frames,
            check_frames=check_frames,
            method=method,
            confidence=confidence,
        )
    except StreamerError as exc:
        fail_usage(str(exc))
    except OSError as exc:
        fail_usage(f"{exc.filename or output}: {exc.strerror or exc}")
    agreement = report.agreement
    click.echo(f"wrote {output} ({method} calibration on {report.calibration_frames} frames)")
    click.echo(
        f"speed (batch 1, CPU): float {report.float_ms:.1f} ms, int8 {report.int8_ms:.1f} ms "
        f"per frame: {report.speedup:.2f}x"
    )
    click.echo(
        f"agreement on {agreement.frames} other frames: {agreement.matched} of "
        f"{agreement.float_boxes} float detections matched by int8 at IoU >= {MATCH_IOU} "
        f"({agreement.matched_fraction:.1%}), mean IoU {agreement.mean_iou:.3f}; "
        f"int8 found {agreement.int8_boxes}"
    )
    if agreement.float_boxes == 0:
        log.warning(
            "the float model found nothing on the check frames: agreement is unknown; "
            "use clips where it finds objects"
        )
    elif agreement.matched_fraction < MIN_AGREEMENT:
        log.warning(
            "the int8 model misses or moves %.0f %% of the float model's detections: "
            "prefer the float model, or calibrate on more varied frames",
            100 * (1 - agreement.matched_fraction),
        )
    if json_file is not None:
        json_file.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
