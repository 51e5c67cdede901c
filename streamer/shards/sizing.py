"""How many shards `workers: auto` runs on this machine.

Each shard is one Python process: its decoding, preparing and event work share one
interpreter lock, so a shard keeps about one core busy at most. Offline (files read as
fast as possible) every shard is busy all the time: one per core. Live, a camera costs
its frame rate times the time a frame takes (the model's time, measured when the model
is loaded, plus decoding and the rest); enough shards run to keep each below
`TARGET_LOAD` of a core. Never more shards than cores or than sources.
"""

from __future__ import annotations

import math

TARGET_LOAD = 0.7  # of a core per shard: room for bursts and for the supervisor
PER_FRAME_OVERHEAD_S = 0.006  # decode a 720p frame, prepare it, make events (2-core box)
LIVE_FPS_ASSUMED = 15.0  # a camera's rate, unknown until it connects


def auto_workers(
    sources: int, cores: int, model_s_per_frame: float, live: bool, gpus: int = 0
) -> int:
    """Shards to run for `sources` on a machine with `cores` cores and `gpus` GPUs, a
    frame taking `model_s_per_frame` in the model (on the GPU when there is one).

    >>> auto_workers(sources=8, cores=16, model_s_per_frame=0.010, live=True)
    3
    >>> auto_workers(sources=8, cores=2, model_s_per_frame=0.010, live=False)
    2
    """
    limit = max(1, min(sources, cores))
    if not live:
        return limit
    cpu_s = PER_FRAME_OVERHEAD_S + (0.0 if gpus else model_s_per_frame)
    busy_cores = sources * LIVE_FPS_ASSUMED * cpu_s
    return max(1, min(limit, math.ceil(busy_cores / TARGET_LOAD)))
