"""`--record FILE`: the processed video of each source, with what the pipeline drew.

A sink thread of its own: the postprocessing thread hands it every processed frame
(through `FrameBoard`), and this thread draws and encodes them. It is lossless like the
event sinks: when encoding cannot keep up, the pipeline waits (a live source then drops
frames before inference, counted), so the recording has exactly the frames processed.
Frames are timed by the source's own clock, so a recording plays at the source's pace
even when frames were dropped on the way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
from av.video.reformatter import VideoReformatter

from streamer.preview.board import FrameBoard, Shown
from streamer.runtime.messages import EndOfStream
from streamer.runtime.queues import StageQueue, until_ended
from streamer.runtime.threads import Supervisor

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)  # milliseconds: frames keep their own timing
PREFERRED_CODECS = ("libx264", "h264", "mpeg4")  # the first this PyAV build can encode
# With x264's default preset, recording 4 demo sources on 2 cores took the pipeline from
# 159 to 53 frames/s (veryfast: 79, ultrafast: 93, `python -m benchmarks.preview`): a
# recording is for looking at, so it takes the fastest, at a larger file.
CODEC_OPTIONS: dict[str, dict[str, object]] = {"libx264": {"preset": "ultrafast"}}
RECORD_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")
RECORD_QUEUE = 8  # frames waiting to be encoded before the pipeline waits


def recording_path(path: Path, source_id: str, several: bool) -> Path:
    """Where one source's recording goes: `path` itself for a pipeline of one source,
    else `path` with the source id before the suffix (`out.mp4` -> `out.cam1.mp4`)."""
    return path.with_name(f"{path.stem}.{source_id}{path.suffix}") if several else path


def video_codec() -> str:
    for name in PREFERRED_CODECS:
        try:
            av.codec.Codec(name, "w")
        except av.error.FFmpegError:  # not built into this PyAV
            continue
        return name
    raise RuntimeError(f"this PyAV can encode none of {', '.join(PREFERRED_CODECS)}")


@dataclass
class _Output:
    container: Any  # av.container.OutputContainer
    stream: Any  # av.video.stream.VideoStream
    width: int
    height: int
    first_s: float
    last_pts: int = -1
    frames: int = 0


class Recorder:
    """Writes each source's processed frames to its own video file."""

    name = "record"

    def __init__(
        self,
        inbox: StageQueue[Shown],
        board: FrameBoard,
        paths: dict[str, Path],
        supervisor: Supervisor,
    ) -> None:
        self._inbox = inbox
        self._board = board
        self._paths = paths
        self._supervisor = supervisor
        self._codec = video_codec()
        self._reformatter = VideoReformatter()  # this thread's own (see `to_bgr`)
        self._outputs: dict[str, _Output] = {}

    def run(self) -> None:
        try:
            for item in until_ended(self._inbox, self._paths, self._supervisor.halt):
                if isinstance(item, EndOfStream):
                    self._finish(item.source_id)
                elif isinstance(item, Shown):
                    self._write(item)
        finally:
            self.close()

    def close(self) -> None:
        for source_id in list(self._outputs):
            self._finish(source_id)

    def _write(self, shown: Shown) -> None:
        source_id = shown.frame.source_id
        image = self._board.annotated(shown, self._reformatter)
        out = self._outputs.get(source_id) or self._open(source_id, shown, image.shape)
        if image.shape[:2] != (out.height, out.width):
            # The stream changed size midway, or had an odd side (yuv420p needs even
            # ones): the recording keeps the size it started with.
            image = cv2.resize(image, (out.width, out.height), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        # Strictly increasing: two frames with one timestamp would be one to the muxer.
        pts = max(round((shown.frame.time_s - out.first_s) / TIME_BASE), out.last_pts + 1)
        frame.pts, frame.time_base = pts, TIME_BASE
        out.last_pts = pts
        for packet in out.stream.encode(frame):
            out.container.mux(packet)
        out.frames += 1

    def _open(self, source_id: str, shown: Shown, shape: Sequence[int]) -> _Output:
        path = self._paths[source_id]
        container = av.open(str(path), mode="w")
        stream = container.add_stream(self._codec, rate=30)
        assert isinstance(stream, av.VideoStream)
        height, width = int(shape[0]) // 2 * 2, int(shape[1]) // 2 * 2
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = CODEC_OPTIONS.get(self._codec, {})
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        out = _Output(container, stream, width, height, shown.frame.time_s)
        self._outputs[source_id] = out
        log.info("recording %s to %s (%s, %dx%d)", source_id, path, self._codec, width, height)
        return out

    def _finish(self, source_id: str) -> None:
        out = self._outputs.pop(source_id, None)
        if out is None:
            return
        for packet in out.stream.encode(None):
            out.container.mux(packet)
        out.container.close()
        log.info("recorded %d frames of %s to %s", out.frames, source_id, self._paths[source_id])
