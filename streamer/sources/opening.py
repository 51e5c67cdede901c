"""Opening a source with PyAV: files, network streams and V4L2 devices, the FFmpeg options
each needs, and hardware decoding where the machine has it."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import av
import av.error
from av.codec.hwaccel import HWAccel, hwdevices_available

from streamer.config.schema import HwAccel, SourceConfig
from streamer.errors import SourceError

log = logging.getLogger(__name__)

# RTSP cameras send their parameter sets in band: a small probe opens a stream in about
# 0.25 s instead of 2.5 s.
FAST_PROBE = {"analyzeduration": "0", "probesize": "32768"}
# Titles and handler names that are not UTF-8 (some cameras write Latin-1) must not stop a
# source: PyAV would raise UnicodeDecodeError when it opens one.
METADATA_ERRORS = "replace"
# What `hwaccel: auto` tries, in order: dedicated decoders before general-purpose APIs.
HWACCEL_PREFERENCE = ("cuda", "vaapi", "videotoolbox")


def probe_file(uri: str, options: dict[str, str] | None = None) -> int | None:
    """The number of frames the container announces (None: unknown); SourceError when
    `uri` is not a readable video file."""
    path = Path(uri)
    if not path.is_file():
        raise SourceError(f"{uri}: video file not found")
    try:
        with av.open(uri, options=options, metadata_errors=METADATA_ERRORS) as container:
            if not container.streams.video:
                raise SourceError(f"{uri}: no video track")
            return int(container.streams.video[0].frames) or None
    except av.error.FFmpegError as exc:
        raise SourceError(f"{uri}: not a video file ({exc.strerror or exc})") from None


def open_options(config: SourceConfig) -> dict[str, str]:
    """FFmpeg options for a live source: ours first, the pipeline's own on top."""
    options: dict[str, str] = {}
    if config.uri.startswith(("rtsp://", "rtsps://")):
        options = {"rtsp_transport": str(config.transport), **FAST_PROBE}
    options.update(file_options(config))
    return options


def file_options(config: SourceConfig) -> dict[str, str]:
    return {k: str(v) for k, v in config.ffmpeg_options.items()}


@functools.cache
def hwaccel_problem(device_type: str) -> str | None:
    """None when frames can be decoded on `device_type` here, else why not. FFmpeg creates
    the device when a decoder is made with it, so one throwaway H.264 decoder tells."""
    available = hwdevices_available()
    if device_type not in available:
        return f"not in this FFmpeg build (it has: {', '.join(available) or 'none'})"
    try:
        decoder = av.CodecContext.create("h264", "r", hwaccel=HWAccel(device_type=device_type))
    except av.error.FFmpegError as exc:
        return f"no usable {device_type} device ({exc.strerror or exc})"
    if not decoder.is_hwaccel:  # FFmpeg's own decoders cannot use this kind of device
        return f"FFmpeg's decoders do not decode on {device_type}"
    return None


def choose_hwaccel(config: SourceConfig) -> str | None:
    """The hardware device type a source is decoded on, or None for software decoding; one
    warning that names the source when the one asked for cannot be used here."""
    if config.hwaccel is HwAccel.NONE:
        return None
    wanted = HWACCEL_PREFERENCE if config.hwaccel is HwAccel.AUTO else (str(config.hwaccel),)
    problems = []
    for device_type in wanted:
        problem = hwaccel_problem(device_type)
        if problem is None:
            return device_type
        problems.append(f"{device_type}: {problem}")
    log.warning(
        "source %s: hardware decoding (hwaccel: %s) unavailable, decoding in software (%s)",
        config.id,
        config.hwaccel,
        "; ".join(problems),
    )
    return None


def hardware_decoding(device_type: str | None, keep_on_gpu: int | None) -> HWAccel | None:
    """PyAV's settings for decoding on `device_type`. Packets the hardware decoder cannot
    take (a profile it lacks) are decoded in software. Frames are downloaded to system
    memory, where preprocessing reformats them, unless NVDEC decodes them and batches are
    prepared on CUDA device `keep_on_gpu`: then they stay there (FFmpeg's CUDA frames,
    read through DLPack), decoded on that same device."""
    if device_type is None:
        return None
    if device_type == "cuda" and keep_on_gpu is not None:
        return HWAccel(
            device_type, device=str(keep_on_gpu), allow_software_fallback=True, is_hw_owned=True
        )
    return HWAccel(device_type, allow_software_fallback=True)


def open_container(
    config: SourceConfig, device_type: str | None = None, keep_on_gpu: int | None = None
) -> Any:
    hwaccel = hardware_decoding(device_type, keep_on_gpu)
    if config.is_file:
        return av.open(
            config.uri, options=file_options(config), metadata_errors=METADATA_ERRORS,
            hwaccel=hwaccel,
        )  # fmt: skip
    timeout = (config.open_timeout_s, config.read_timeout_s)
    if config.is_device:
        device = config.uri.removeprefix("v4l2://")
        return av.open(
            device, format="v4l2", options=open_options(config), timeout=timeout,
            metadata_errors=METADATA_ERRORS, hwaccel=hwaccel,
        )  # fmt: skip
    return av.open(
        config.uri, options=open_options(config), timeout=timeout,
        metadata_errors=METADATA_ERRORS, hwaccel=hwaccel,
    )  # fmt: skip
