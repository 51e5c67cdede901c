"""Decisions about a pipeline's shape, pure of I/O: how big each queue is and what it does
when full, and how many frames an offline run will decode."""

from __future__ import annotations

from dataclasses import dataclass

from streamer.config.schema import PipelineConfig
from streamer.runtime.queues import Overflow
from streamer.sources.video import SourcePlan

EVENT_QUEUE_SIZE = 4096


@dataclass(frozen=True)
class QueuePlan:
    size: int
    overflow: Overflow


def plan_queues(config: PipelineConfig, live: bool, max_batch: int) -> dict[str, QueuePlan]:
    """Each queue's size and overflow: live pipelines keep the freshest frames before
    inference and lose nothing after it; offline pipelines lose nothing anywhere.

    >>> from streamer.config import parse_config
    >>> config = parse_config({"name": "p", "sources": [{"id": "a", "uri": "a.mp4"},
    ...     {"id": "b", "uri": "b.mp4"}], "model": {"path": "m.onnx"}}, "p.yaml")
    >>> plan_queues(config, live=True, max_batch=4)["decoded"]
    QueuePlan(size=4, overflow=<Overflow.DROP_OLDEST: 'drop_oldest'>)
    """
    n = len(config.sources)
    leaky = Overflow.DROP_OLDEST if live else Overflow.BLOCK
    defaults = {
        "decoded": QueuePlan(2 * n if live else 8 * n, leaky),
        # Live: one batch waiting at most, so the model always gets the freshest frames.
        "prepared": QueuePlan(max_batch if live else 2 * max_batch, leaky),
        "inferred": QueuePlan(4 * max_batch, Overflow.BLOCK),
        "events": QueuePlan(EVENT_QUEUE_SIZE, Overflow.BLOCK),
    }
    plans = {}
    for name, default in defaults.items():
        given = getattr(config.queues, name)
        overflow = getattr(given, "overflow", None) or default.overflow
        plans[name] = QueuePlan(given.size or default.size, overflow)
    return plans


def expected_frames(plans: list[SourcePlan], file_frames: dict[str, int | None]) -> int | None:
    """How many frames an offline run will decode in all, when every source says.

    >>> from streamer.config.schema import SourceConfig
    >>> a = SourcePlan(SourceConfig(id="a", uri="a.mp4"), False, 500, max_frames=50)
    >>> expected_frames([a], {"a": 300}), expected_frames([a], {"a": None})
    (50, None)
    """
    total = 0
    for plan in plans:
        frames = file_frames.get(plan.config.id)
        if plan.realtime or frames is None:
            return None
        total += min(frames, plan.max_frames or frames)
    return total
