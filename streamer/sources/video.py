"""A video source: one thread per source decodes with PyAV and stamps each frame.

Files are read as fast as the pipeline takes them (offline: every frame, no deadline) or
paced at their own frame rate (realtime: like a camera, each frame stamped with its paced
presentation time). Live URLs are opened with read timeouts and retried with backoff
when they cannot be reached or stop sending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import av.error

from streamer.analytics.motion import MotionGate
from streamer.config.schema import PipelineConfig, SkipFrames, SourceConfig
from streamer.errors import ConfigError
from streamer.events.event import SourceProblem, SourceState
from streamer.observability.redact import redact
from streamer.quality.camera import CameraWatch
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.messages import (
    DropReason,
    EndOfStream,
    EndReason,
    Frame,
    HealthChange,
    SourceStatus,
    Still,
)
from streamer.runtime.queues import POLL_S, StageQueue
from streamer.runtime.stats import RunStats
from streamer.runtime.threads import Supervisor
from streamer.sources.opening import choose_hwaccel, open_container
from streamer.sources.problems import diagnose
from streamer.sources.timing import Backoff, Pacer, RateLimiter

log = logging.getLogger(__name__)

STAGE = "decode"


@dataclass(frozen=True)
class SourcePlan:
    """How one source runs, fixed when the pipeline is built."""

    config: SourceConfig
    realtime: bool
    max_latency_ms: int
    max_frames: int | None


def plan_sources(config: PipelineConfig, max_frames: int | None) -> list[SourcePlan]:
    """Decide per source whether it runs live (paced, with deadlines) or offline.

    Live URLs are always live. Files are offline unless asked otherwise; in a pipeline
    that also has live sources they are paced too, since the queues in front of the
    model are leaky there and would drop an offline file's frames.
    """
    live_anywhere = any(s.realtime or not s.is_file for s in config.sources)
    plans = []
    for i, s in enumerate(config.sources):
        if not s.is_file and s.realtime is False:
            raise ConfigError(f"sources[{i}].realtime: a live URL is always realtime")
        if s.is_file and s.realtime is False and live_anywhere:
            raise ConfigError(
                f"sources[{i}].realtime: false cannot be mixed with live sources in one pipeline"
            )
        realtime = live_anywhere if s.realtime is None else s.realtime
        latency = s.max_latency_ms or config.realtime.max_latency_ms
        plans.append(
            SourcePlan(
                s, realtime=realtime or not s.is_file, max_latency_ms=latency, max_frames=max_frames
            )
        )
    return plans


class Stalled(Exception):
    """A live connection that delivers data but no frame (see `stall_timeout_s`), or
    nothing at all for `read_timeout_s`."""


class EndedEarly(Exception):
    """A file whose data ends before the frames its container announces: truncated (a copy
    or a recording cut short) or damaged."""


class NoVideoTrack(Exception):
    """A live stream opened without a video track (an audio-only feed, a garbage answer):
    retried like any other failure, since a camera may come back with video."""


class VideoSource:
    """Decodes one source onto the `decoded` queue, then ends it in band."""

    def __init__(
        self,
        plan: SourcePlan,
        out: StageQueue[Frame | Still],
        stats: RunStats,
        supervisor: Supervisor,
        clock: Clock = SYSTEM_CLOCK,
        watch: CameraWatch | None = None,
        gate: MotionGate | None = None,
        keep_on_gpu: int | None = None,
    ) -> None:
        """`watch`: judges the picture's health, when the pipeline watches it; `gate`:
        tells the frames the model need not see, when the source is motion-gated;
        `keep_on_gpu`: the CUDA device where frames decoded by NVDEC stay, when batches
        are prepared there."""
        self.plan = plan
        self.id = plan.config.id
        self._out = out
        self._stats = stats
        self._supervisor = supervisor
        self._clock = clock
        self._index = 0
        self._problem: SourceProblem | None = None  # said once, until it connects again
        self.failure: Exception | None = None  # why the source failed for good
        self._hwaccel = choose_hwaccel(plan.config)
        self._watch = watch
        self._gate = gate
        self._keep_on_gpu = keep_on_gpu

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def run(self) -> None:
        reason = EndReason.EOF
        try:
            if self.plan.config.is_file:
                self._decode_once()
            else:
                self._decode_live()
            if self._supervisor.stop_sources.is_set():
                reason = EndReason.STOPPED
        except Exception as exc:  # noqa: BLE001 - a failing source ends only itself
            self.failure = exc
            reason = EndReason.FAILED
            log.error(
                "source %s (%s) failed: %s", self.id, redact(self.plan.config.uri), redact(str(exc))
            )
        finally:
            self._status(SourceState.ENDED, reason.value)
            self._out.put_control(EndOfStream(self.id, reason))

    def _should_stop(self) -> bool:
        if self._supervisor.stop_sources.is_set():
            return True
        return self.plan.max_frames is not None and self._index >= self.plan.max_frames

    def _decode_once(self) -> None:
        with open_container(self.plan.config, self._hwaccel, self._keep_on_gpu) as container:
            if not container.streams.video:
                raise NoVideoTrack(f"{redact(self.plan.config.uri)}: no video track")
            self._announce_connected()
            for frame in self._frames(container):
                self._out.put(self._gated(frame), self._supervisor.halt)
                if self._watch is not None:
                    self._watch_picture(frame, self._watch)

    def _gated(self, frame: Frame) -> Frame | Still:
        gate = self._gate
        if gate is None or gate.wants_model(frame.picture, frame.time_s):
            return frame
        return Still(frame)

    def _watch_picture(self, frame: Frame, watch: CameraWatch) -> None:
        # After the frame is handed on: the health change travels in band behind it.
        changes = watch.observe(frame)
        if changes is None:
            return
        self._stats.camera_health(self.id, watch.gauges)
        for health in changes:
            self._out.put_control(HealthChange(self.id, health, frame))

    def _decode_live(self) -> None:
        config = self.plan.config
        backoff = Backoff(config.reconnect)
        url = redact(config.uri)
        attempt = 0
        while not self._should_stop():
            opened_ns = self._clock.monotonic_ns()
            diagnosis = None
            try:
                self._decode_once()
                detail = "stream ended"
            except (Stalled, NoVideoTrack) as exc:
                detail = str(exc)
            except (av.error.FFmpegError, OSError) as exc:
                detail = redact(str(exc))
                diagnosis = diagnose(exc, config.uri)
            if (self._clock.monotonic_ns() - opened_ns) / 1e9 >= config.reconnect.healthy_after_s:
                backoff.reset()  # it worked for a while: start the backoff afresh
                attempt = 0
            if self._should_stop():
                return
            attempt += 1
            self._stats.source_reconnected(self.id)
            if diagnosis is None:
                self._problem = None
                delay_s = backoff.next_delay_s()
                log.warning("source %s (%s): %s; retrying in %.1f s", self.id, url, detail, delay_s)
                self._status(SourceState.DISCONNECTED, detail)
            else:
                # Retrying soon cannot help: someone must change the camera or the file.
                delay_s = config.reconnect.max_delay_s
                if diagnosis.problem is not self._problem:
                    log.error(
                        "source %s (%s): %s: %s (%s); retrying every %.1f s",
                        self.id, url, diagnosis.problem, diagnosis.advice, detail, delay_s,
                    )  # fmt: skip
                    self._problem = diagnosis.problem
                    status = SourceStatus(
                        self.id, SourceState.DISCONNECTED, self._clock.time(),
                        f"{diagnosis.advice} ({detail})", diagnosis.problem,
                    )  # fmt: skip
                    self._report(status)
            if self._clock.wait(self._supervisor.stop_sources, delay_s):
                return
            if self._problem is None:
                self._status(SourceState.RECONNECTING, f"attempt {attempt}")

    def _announce_connected(self) -> None:
        url = redact(self.plan.config.uri)
        if not self.plan.config.is_file:
            log.info("source %s connected (%s)", self.id, url)
        self._problem = None
        self._status(SourceState.CONNECTED, url)

    def _status(self, state: SourceState, detail: str) -> None:
        self._report(SourceStatus(self.id, state, self._clock.time(), detail))

    def _report(self, status: SourceStatus) -> None:
        self._stats.source_state(self.id, status.status, status.detail, status.problem)
        self._out.put_control(status)

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
        if config.skip_frames is not SkipFrames.NONE:
            stream.codec_context.skip_frame = config.skip_frames.value.upper()
        # FFmpeg's guess weighs the stream's declared and measured rates; the average alone
        # is nonsense when every timestamp is equal (4500 fps seen from one encoder).
        rate = stream.guessed_rate or stream.average_rate
        pacer = Pacer(1.0 / float(rate) if rate else 1 / 25, self._clock)
        limiter = RateLimiter(config.max_fps) if config.max_fps else None
        paced = config.is_file and self.plan.realtime
        budget_ns = self.plan.max_latency_ms * 1_000_000
        # The watchdog of a live source: data that arrives but never decodes into a frame
        # (a silent socket is caught by the read timeout instead).
        stall_s = None if config.is_file else config.stall_timeout_s
        read_timeout_ns = None if config.is_file else int(config.read_timeout_s * 1e9)
        last_frame_ns = last_packet_ns = self._clock.monotonic_ns()
        announced = int(stream.frames) if config.is_file else 0  # 0: unknown
        packets = undecodable = 0
        for packet in container.demux(stream):
            packets += packet.size > 0  # the demuxer ends with an empty packet
            now_ns = self._clock.monotonic_ns()
            if read_timeout_ns is not None and now_ns - last_packet_ns >= read_timeout_ns:
                # The read timed out: FFmpeg's RTSP demuxer hands over what it held before
                # it gives up on the next read, one read timeout later. A silent camera is
                # down now, not then.
                raise Stalled(f"no data for {(now_ns - last_packet_ns) / 1e9:.1f} s")
            last_packet_ns = now_ns
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:
                self._stats.frame_dropped(STAGE, DropReason.DECODE_ERROR.value, self.id)
                undecodable += 1
                decoded = []
            if decoded:
                last_frame_ns = self._clock.monotonic_ns()
            elif (
                stall_s is not None and (self._clock.monotonic_ns() - last_frame_ns) / 1e9 > stall_s
            ):
                raise Stalled(f"stalled: no frame for {stall_s:g} s")
            for av_frame in decoded:
                if self._should_stop() or self._supervisor.halt.is_set():
                    return
                index = self._index
                self._index += 1
                self._stats.frame_decoded(self.id)
                if av_frame.is_corrupt:
                    # Concealed damage: detections on smeared macroblocks would be false.
                    self._stats.frame_dropped(STAGE, DropReason.DECODE_ERROR.value, self.id)
                    continue
                pts_s = float(av_frame.time) if av_frame.time is not None else None
                if limiter is not None and not limiter.keep(
                    pts_s if pts_s is not None else self._clock.monotonic_ns() / 1e9
                ):
                    self._stats.frame_dropped(STAGE, DropReason.RATE_LIMIT.value, self.id)
                    continue
                # A file's clock is its own timestamps (made robust by the pacer), whatever
                # the speed it is read at; a live source's clock is the arrival time.
                media_ns = pacer.stamp_ns(pts_s) if config.is_file else None
                if paced and media_ns is not None:
                    self._sleep_until(media_ns)
                    captured_ns = media_ns
                else:
                    captured_ns = self._clock.monotonic_ns()
                frame = Frame(
                    source_id=self.id,
                    index=index,
                    pts_s=pts_s,
                    captured_ns=captured_ns,
                    captured_at=self._clock.time()
                    - (self._clock.monotonic_ns() - captured_ns) / 1e9,
                    deadline_ns=captured_ns + budget_ns if self.plan.realtime else None,
                    picture=av_frame,
                    time_s=(media_ns if media_ns is not None else captured_ns) / 1e9,
                )
                yield frame
        if packets < announced:
            # A file is opened once: every frame it gave is counted in `_index`.
            missing = max(0, announced - self._index - undecodable)
            self._stats.frame_dropped(STAGE, DropReason.DECODE_ERROR.value, self.id, missing)
            raise EndedEarly(
                f"{redact(config.uri)} ended after {packets} of the {announced} frames it "
                f"announces (truncated or damaged)"
            )

    def _sleep_until(self, due_ns: int) -> None:
        stop = self._supervisor.stop_sources
        while not stop.is_set():
            remaining_s = (due_ns - self._clock.monotonic_ns()) / 1e9
            if remaining_s <= 0:
                return
            self._clock.wait(stop, min(remaining_s, POLL_S))
