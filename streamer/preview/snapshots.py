"""Pictures for events (`events.snapshots`): the frame that made an object event, drawn
as the preview draws it, named in the event so that a consumer can show what happened.

Made on the postprocessing thread, once per frame however many events it made. In Redis
the picture is handed to the Redis sink with the first event that names it, and written
under its own key (expiring after `ttl_s`) before that event; on disk it is written here,
as a file removed once older than `ttl_s`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from av.video.reformatter import VideoReformatter

from streamer.config.schema import SnapshotsConfig, SnapshotStore
from streamer.events.event import EventType
from streamer.preview.board import FrameBoard, Shown, encode_jpeg
from streamer.runtime.clock import SYSTEM_CLOCK, Clock
from streamer.runtime.messages import Attachment

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0  # how often the disk store looks for pictures past their time


def snapshot_key(pipeline: str, run_id: str, source_id: str, frame_index: int) -> str:
    return f"streamer:{pipeline}:snapshot:{run_id}:{source_id}:{frame_index}"


class EventSnapshots:
    def __init__(
        self,
        settings: SnapshotsConfig,
        pipeline: str,
        run_id: str,
        board: FrameBoard,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._run_id = run_id
        self._board = board
        self._clock = clock
        self._types = frozenset(settings.types)
        self._reformatter = VideoReformatter()  # this thread's own (see `to_bgr`)
        self._folder = Path(settings.folder) / pipeline
        self._pruned_at = clock.monotonic_ns()

    def wants(self, type_: EventType) -> bool:
        return type_ in self._types

    def take(self, shown: Shown) -> tuple[str, Attachment | None]:
        """The picture of `shown`: its name (a key or a path), and the attachment the Redis
        sink is to store (None: it is on disk already). OSError when the file cannot be
        written."""
        jpeg = encode_jpeg(self._board.annotated(shown, self._reformatter), self._settings.quality)
        frame = shown.frame
        if self._settings.store is SnapshotStore.REDIS:
            key = snapshot_key(self._pipeline, self._run_id, frame.source_id, frame.index)
            return key, Attachment(key, jpeg, self._settings.ttl_s)
        folder = self._folder / frame.source_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self._run_id}-{frame.index:08d}.jpg"
        part = path.with_suffix(".part")
        part.write_bytes(jpeg)
        os.replace(part, path)  # a reader never sees half a picture
        self._prune()
        return str(path), None

    def _prune(self) -> None:
        now_ns = self._clock.monotonic_ns()
        if (now_ns - self._pruned_at) / 1e9 < PRUNE_EVERY_S:
            return
        self._pruned_at = now_ns
        oldest = self._clock.time() - self._settings.ttl_s
        removed = 0
        for folder in self._folder.iterdir():
            for picture in folder.glob("*.jpg"):
                try:
                    if picture.stat().st_mtime < oldest:
                        picture.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue  # removed meanwhile
        if removed:
            log.debug(
                "snapshots: removed %d pictures older than %.0f s", removed, self._settings.ttl_s
            )
