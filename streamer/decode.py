"""Video sources: one thread per source decodes with PyAV and stamps each frame.

Files are read as fast as the pipeline takes them (offline: every frame, no
deadline) or paced at their own frame rate (realtime: like a camera, each frame
stamped with its paced presentation time). Live URLs are opened with read timeouts
and retried with backoff when they cannot be reached or stop sending.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
from av.codec.hwaccel import HWAccel, hwdevices_available

from streamer.config import ReconnectConfig, SourceConfig
from streamer.errors import SourceError
from streamer.messages import DropReason, EndOfStream, Frame, SourceStatus
from streamer.queues import POLL_S, StageQueue
from streamer.runtime import Supervisor
from streamer.stats import RunStats
from streamer.urls import redact

log = logging.getLogger(__name__)

STAGE = "decode"
# RTSP cameras send their parameter sets in band: a small probe opens a stream in about
# 0.25 s instead of 2.5 s.
FAST_PROBE = {"analyzeduration": "0", "probesize": "32768"}
# Titles and handler names that are not UTF-8 (some cameras write Latin-1) must not stop a
# source: PyAV would raise UnicodeDecodeError when it opens one.
METADATA_ERRORS = "replace"
MAX_PTS_STEP_S = 10.0  # a larger jump in timestamps is a discontinuity, not a pause
# What `hwaccel: auto` tries, in order: dedicated decoders before general-purpose APIs.
HWACCEL_PREFERENCE = ("cuda", "vaapi", "videotoolbox")


@dataclass(frozen=True)
class SourcePlan:
    """How one source runs, fixed when the pipeline is built."""

    config: SourceConfig
    realtime: bool
    max_latency_ms: int
    max_frames: int | None


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
        options = {"rtsp_transport": config.transport, **FAST_PROBE}
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
    if config.hwaccel == "none":
        return None
    wanted = HWACCEL_PREFERENCE if config.hwaccel == "auto" else (config.hwaccel,)
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


def _open(config: SourceConfig, device_type: str | None = None) -> Any:
    # Packets the hardware decoder cannot take (a profile it lacks) are decoded in software,
    # and frames are downloaded to system memory (is_hw_owned=False), where preprocessing
    # reformats them.
    hwaccel = HWAccel(device_type, allow_software_fallback=True) if device_type else None
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


class RateLimiter:
    """Keeps at most `max_fps` frames a second, evenly spaced, judged by frame time.

    A frame is kept once its time reaches the next slot; slots advance by whole
    intervals, so 30 fps limited to 12 keeps 12 frames a second on average. After a gap
    longer than one interval, or a jump back in time, the slots restart from that frame.
    """

    def __init__(self, max_fps: float) -> None:
        self._interval_s = 1.0 / max_fps
        # Timestamps are rounded to their time base (often milliseconds).
        self._tolerance_s = min(self._interval_s * 0.1, 0.005)
        self._next_s: float | None = None

    def keep(self, t_s: float) -> bool:
        if self._next_s is None or abs(t_s - self._next_s) > self._interval_s:
            self._next_s = t_s  # the first frame, or a jump in time either way
        if t_s < self._next_s - self._tolerance_s:
            return False
        self._next_s += self._interval_s
        return True


class Backoff:
    """Waits between reconnection attempts: doubling from the initial delay up to the
    maximum, each randomised by +-jitter so that cameras that failed together do not all
    retry together."""

    def __init__(self, config: ReconnectConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng or random.Random()
        self._next_s = config.initial_delay_s

    def next_delay_s(self) -> float:
        base = self._next_s
        self._next_s = min(base * 2, self._config.max_delay_s)
        jitter = self._config.jitter
        return base * self._rng.uniform(1 - jitter, 1 + jitter)

    def reset(self) -> None:
        self._next_s = self._config.initial_delay_s


class Stalled(Exception):
    """A live connection that delivers data but no frame (see `stall_timeout_s`)."""


class NoVideoTrack(Exception):
    """A live stream opened without a video track (an audio-only feed, a garbage answer):
    retried like any other failure, since a camera may come back with video."""


class Pacer:
    """Turns presentation times into paced monotonic stamps, robust to bad timestamps."""

    def __init__(self, fallback_step_s: float) -> None:
        self._fallback_step_s = fallback_step_s
        self._start_ns: int | None = None
        self._media_s = 0.0
        self._last_pts_s: float | None = None

    def stamp_ns(self, pts_s: float | None) -> int:
        """When the frame with `pts_s` is due; timestamps that go backwards or jump
        advance the clock by one frame instead."""
        if self._start_ns is None:
            self._start_ns = time.monotonic_ns()
        elif pts_s is None or self._last_pts_s is None:
            self._media_s += self._fallback_step_s
        else:
            step = pts_s - self._last_pts_s
            self._media_s += step if 0 < step <= MAX_PTS_STEP_S else self._fallback_step_s
        if pts_s is not None:
            self._last_pts_s = pts_s
        return self._start_ns + int(self._media_s * 1e9)


class VideoSource:
    """Decodes one source onto the `decoded` queue, then ends it in band."""

    def __init__(
        self,
        plan: SourcePlan,
        out: StageQueue[Frame],
        stats: RunStats,
        supervisor: Supervisor,
    ) -> None:
        self.plan = plan
        self.id = plan.config.id
        self._out = out
        self._stats = stats
        self._supervisor = supervisor
        self._index = 0
        self.failed = False
        self._hwaccel = choose_hwaccel(plan.config)

    def run(self) -> None:
        reason = "eof"
        try:
            if self.plan.config.is_file:
                self._decode_once()
            else:
                self._decode_live()
            if self._supervisor.stop_sources.is_set():
                reason = "stopped"
        except Exception as exc:  # noqa: BLE001 - a failing source ends only itself
            self.failed = True
            reason = "failed"
            log.error(
                "source %s (%s) failed: %s", self.id, redact(self.plan.config.uri), redact(str(exc))
            )
        finally:
            self._out.put_control(SourceStatus(self.id, "ended", time.time(), reason))
            self._out.put_control(EndOfStream(self.id, reason))

    def _should_stop(self) -> bool:
        if self._supervisor.stop_sources.is_set():
            return True
        return self.plan.max_frames is not None and self._index >= self.plan.max_frames

    def _decode_once(self) -> None:
        with _open(self.plan.config, self._hwaccel) as container:
            if not container.streams.video:
                raise NoVideoTrack(f"{redact(self.plan.config.uri)}: no video track")
            self._announce_connected()
            for frame in self._frames(container):
                self._out.put(frame, self._supervisor.halt)

    def _decode_live(self) -> None:
        config = self.plan.config
        backoff = Backoff(config.reconnect)
        url = redact(config.uri)
        attempt = 0
        while not self._should_stop():
            opened = time.monotonic()
            try:
                self._decode_once()
                detail = "stream ended"
            except (Stalled, NoVideoTrack) as exc:
                detail = str(exc)
            except (av.error.FFmpegError, OSError) as exc:
                detail = redact(str(exc))
            if time.monotonic() - opened >= config.reconnect.healthy_after_s:
                backoff.reset()  # it worked for a while: start the backoff afresh
                attempt = 0
            if self._should_stop():
                return
            delay_s = backoff.next_delay_s()
            attempt += 1
            log.warning("source %s (%s): %s; retrying in %.1f s", self.id, url, detail, delay_s)
            self._out.put_control(SourceStatus(self.id, "disconnected", time.time(), detail))
            self._stats.source_reconnected(self.id)
            if self._supervisor.stop_sources.wait(delay_s):
                return
            self._out.put_control(
                SourceStatus(self.id, "reconnecting", time.time(), f"attempt {attempt}")
            )

    def _announce_connected(self) -> None:
        url = redact(self.plan.config.uri)
        if not self.plan.config.is_file:
            log.info("source %s connected (%s)", self.id, url)
        self._out.put_control(SourceStatus(self.id, "connected", time.time(), url))

    def _frames(self, container: Any) -> Iterator[Frame]:
        config = self.plan.config
        stream = container.streams.video[0]
        # Frame threading decodes several frames at once: the most throughput, at the
        # cost of a few frames of delay; only offline files can afford that delay.
        offline = config.is_file and not self.plan.realtime
        stream.thread_type = "AUTO" if offline else "SLICE"
        if self._hwaccel is not None and not stream.codec_context.is_hwaccel:
            # The device works, but not for this stream's codec or profile.
            log.warning(
                "source %s: %s cannot decode %s on %s, decoding in software",
                self.id, redact(config.uri), stream.codec_context.name, self._hwaccel,
            )  # fmt: skip
            self._hwaccel = None
        if config.skip_frames != "none":
            stream.codec_context.skip_frame = config.skip_frames.upper()
        # FFmpeg's guess weighs the stream's declared and measured rates; the average alone
        # is nonsense when every timestamp is equal (4500 fps seen from one encoder).
        rate = stream.guessed_rate or stream.average_rate
        pacer = Pacer(1.0 / float(rate) if rate else 1 / 25)
        limiter = RateLimiter(config.max_fps) if config.max_fps else None
        paced = config.is_file and self.plan.realtime
        budget_ns = self.plan.max_latency_ms * 1_000_000
        # The watchdog of a live source: data that arrives but never decodes into a frame
        # (a silent socket is caught by the read timeout instead).
        stall_s = None if config.is_file else config.stall_timeout_s
        last_frame_at = time.monotonic()
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:
                self._stats.frame_dropped(STAGE, DropReason.DECODE_ERROR.value)
                decoded = []
            if decoded:
                last_frame_at = time.monotonic()
            elif stall_s is not None and time.monotonic() - last_frame_at > stall_s:
                raise Stalled(f"stalled: no frame for {stall_s:g} s")
            for av_frame in decoded:
                if self._should_stop() or self._supervisor.halt.is_set():
                    return
                index = self._index
                self._index += 1
                self._stats.frame_decoded(self.id)
                if av_frame.is_corrupt:
                    # Concealed damage: detections on smeared macroblocks would be false.
                    self._stats.frame_dropped(STAGE, DropReason.DECODE_ERROR.value)
                    continue
                pts_s = float(av_frame.time) if av_frame.time is not None else None
                if limiter is not None and not limiter.keep(
                    pts_s if pts_s is not None else time.monotonic()
                ):
                    self._stats.frame_dropped(STAGE, DropReason.RATE_LIMIT.value)
                    continue
                # A file's clock is its own timestamps (made robust by the pacer), whatever
                # the speed it is read at; a live source's clock is the arrival time.
                media_ns = pacer.stamp_ns(pts_s) if config.is_file else None
                if paced and media_ns is not None:
                    self._sleep_until(media_ns)
                    captured_ns = media_ns
                else:
                    captured_ns = time.monotonic_ns()
                frame = Frame(
                    source_id=self.id,
                    index=index,
                    pts_s=pts_s,
                    captured_ns=captured_ns,
                    captured_at=time.time() - (time.monotonic_ns() - captured_ns) / 1e9,
                    deadline_ns=captured_ns + budget_ns if self.plan.realtime else None,
                    picture=av_frame,
                    time_s=(media_ns if media_ns is not None else captured_ns) / 1e9,
                )
                yield frame

    def _sleep_until(self, due_ns: int) -> None:
        while not self._supervisor.stop_sources.is_set():
            remaining_s = (due_ns - time.monotonic_ns()) / 1e9
            if remaining_s <= 0:
                return
            time.sleep(min(remaining_s, POLL_S))
