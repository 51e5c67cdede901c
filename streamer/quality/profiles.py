"""Reference profiles on disk: what each source's picture and detections looked like on
a good day, written by `streamer profile` and loaded by `health.profile`, so that weeks
of running are compared with that day rather than with whatever the first minute was.

A JSON file, versioned: a file of another version is refused, never half-read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.errors import ConfigError
from streamer.quality.drift import Histograms
from streamer.quality.picture import Reference

PROFILE_VERSION = 1


@dataclass(frozen=True)
class SourceProfile:
    """One source's references; either may be missing (not learnt in the time given)."""

    picture: Reference | None
    detections: Histograms | None


def _array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} is not a 2-D array")
    return array


def reference_to_dict(ref: Reference) -> dict[str, Any]:
    return {
        "brightness": ref.brightness,
        # NaN (a cell without detail) is not JSON: written as -1.
        "texture": ref.texture.round(5).tolist(),
        "sharpness": np.where(np.isfinite(ref.sharpness), ref.sharpness, -1).round(5).tolist(),
        "structure": ref.structure.round(3).tolist(),
    }


def reference_from_dict(o: dict[str, Any]) -> Reference:
    sharpness = _array(o["sharpness"], "sharpness")
    return Reference(
        brightness=float(o["brightness"]),
        texture=_array(o["texture"], "texture"),
        sharpness=np.where(sharpness < 0, np.nan, sharpness).astype(np.float32),
        structure=_array(o["structure"], "structure"),
    )


def save_profiles(
    path: Path, pipeline: str, labels: tuple[str, ...], profiles: dict[str, SourceProfile]
) -> None:
    """Write `profiles` to `path` atomically (a crash leaves the old file whole)."""
    doc = {
        "version": PROFILE_VERSION,
        "pipeline": pipeline,
        "labels": list(labels),
        "sources": {
            sid: {
                "picture": None if p.picture is None else reference_to_dict(p.picture),
                "detections": None if p.detections is None else p.detections.to_dict(),
            }
            for sid, p in profiles.items()
        },
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    os.replace(partial, path)


def load_profiles(path: Path, labels: tuple[str, ...]) -> dict[str, SourceProfile]:
    """The profiles of `path`; ConfigError naming the file for anything wrong with it,
    including a model whose labels differ from those the profile was made with."""
    where = f"health.profile: {path}"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file (write one with `streamer profile`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != PROFILE_VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise ConfigError(
            f"{where}: not a profile of version {PROFILE_VERSION} (found {version!r}); "
            "write it again with `streamer profile`"
        )
    if doc.get("labels") != list(labels):
        raise ConfigError(f"{where}: made with a model of other labels than this pipeline's")
    try:
        return {
            sid: SourceProfile(
                None if s["picture"] is None else reference_from_dict(s["picture"]),
                None if s["detections"] is None else Histograms.from_dict(s["detections"]),
            )
            for sid, s in doc["sources"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where}: damaged ({exc!r})") from None
