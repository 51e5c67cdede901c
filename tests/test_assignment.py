"""Which shard runs which source, and how a sharded run's counts add up: pure logic."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.runtime.stats import RunStats, Totals, render, sum_totals
from streamer.shards.assignment import assign, by_shard
from streamer.shards.sizing import auto_workers

CAMERAS = [f"cam{i}" for i in range(100)]


def shards(n: int) -> dict[str, float]:
    return {f"shard-{i}": 1.0 for i in range(n)}


@settings(max_examples=60, deadline=None)
@given(n_sources=st.integers(1, 120), n_shards=st.integers(1, 12))
def test_every_source_has_one_shard_and_no_shard_takes_more_than_its_share(n_sources, n_shards):
    ids = CAMERAS[:n_sources] + [f"extra{i}" for i in range(max(0, n_sources - 100))]
    placed = assign(ids, shards(n_shards))
    assert set(placed) == set(ids)
    load = Counter(placed.values())
    assert max(load.values()) <= math.ceil(len(ids) / n_shards)


def test_the_same_sources_and_shards_always_give_the_same_assignment():
    assert assign(CAMERAS, shards(3)) == assign(list(reversed(CAMERAS)), shards(3))


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_adding_a_shard_moves_about_its_share_and_only_onto_it(n):
    before, after = assign(CAMERAS, shards(n)), assign(CAMERAS, shards(n + 1))
    moved = [sid for sid in CAMERAS if before[sid] != after[sid]]
    share = len(CAMERAS) / (n + 1)
    assert len(moved) <= 1.5 * share, (len(moved), share)  # a modulo split moves most
    onto_new = sum(after[sid] == f"shard-{n}" for sid in moved)
    assert onto_new >= 0.75 * len(moved)


def test_removing_a_shard_moves_its_sources_and_few_others():
    before = assign(CAMERAS, shards(4))
    after = assign(CAMERAS, {k: v for k, v in shards(4).items() if k != "shard-2"})
    moved = {sid for sid in CAMERAS if before[sid] != after[sid]}
    own = {sid for sid in CAMERAS if before[sid] == "shard-2"}
    assert own <= moved
    assert len(moved - own) <= 0.25 * len(own)


def test_capacity_weights_the_share():
    load = Counter(assign(CAMERAS, {"big": 3.0, "small": 1.0}).values())
    assert 65 <= load["big"] <= 75 and load["big"] + load["small"] == 100


def test_by_shard_names_every_shard_even_an_empty_one():
    assert by_shard({"a": "s0"}, ["s0", "s1"]) == {"s0": ["a"], "s1": []}


def test_bad_capacities_are_refused():
    with pytest.raises(ValueError, match="no shard"):
        assign(CAMERAS, {})
    with pytest.raises(ValueError, match="more than 0"):
        assign(CAMERAS, {"s": 0.0})


def test_auto_sizes_live_cameras_by_their_cost_and_offline_by_the_cores():
    assert auto_workers(sources=1, cores=16, model_s_per_frame=0.05, live=True) == 1
    assert auto_workers(sources=20, cores=16, model_s_per_frame=0.02, live=True) == 12
    assert auto_workers(sources=20, cores=4, model_s_per_frame=0.02, live=True) == 4
    assert auto_workers(sources=20, cores=16, model_s_per_frame=0.02, live=True, gpus=1) == 3
    assert auto_workers(sources=3, cores=16, model_s_per_frame=0.02, live=False) == 3


def test_shards_totals_add_up_to_the_run_and_percentiles_come_from_all_the_values():
    a, b = RunStats(["cam1"]), RunStats(["cam2"])
    for ms in range(1, 101):  # cam1: 1..100 ms
        a.frame_processed("cam1", float(ms))
    for ms in range(101, 201):  # cam2: 101..200 ms
        b.frame_processed("cam2", float(ms))
    a.frame_decoded("cam1")
    b.frame_decoded("cam2")
    a.frame_dropped("infer", "deadline", "cam1")
    b.frame_dropped("infer", "deadline", "cam2")
    a.events_emitted(3)
    b.events_emitted(4)
    a.objects_active("cam1", 2)
    a.count_regions(["door"], [])
    a.object_event("zone_entered", "door", None)
    whole = render(a.totals() + b.totals(), wall_s=10.0)
    assert whole["frames"] == {"decoded": 2, "processed": 200, "still": 0, "late": 0,
                               "dropped": {"infer:deadline": 2}}  # fmt: skip
    assert whole["events"]["emitted"] == 7
    assert whole["latency_ms"]["p50"] == pytest.approx(100, rel=0.02)
    assert whole["latency_ms"]["max"] == 200
    assert list(whole["sources"]) == ["cam1", "cam2"]
    assert whole["sources"]["cam2"]["processed"] == 100
    assert whole["sources"]["cam2"]["dropped"] == {"infer:deadline": 1}
    assert whole["objects"]["active"] == 2
    assert whole["zones"]["door"]["inside"] == 1
    assert whole["fps"] == 20.0
    assert render(sum_totals([a.totals().ended(), b.totals()]), 10.0)["objects"]["active"] == 0
    assert (Totals() + a.totals()).with_lost(5).lost == 5


def test_a_shard_config_has_its_sources_its_spool_and_its_share_of_the_cores(tmp_path):
    from streamer.config.loader import parse_config
    from streamer.shards.supervisor import shard_config

    config = parse_config(
        {
            "name": "site",
            "sources": [
                {"id": "door", "uri": "rtsp://10.0.0.7/s"},
                {"id": "file", "uri": str(tmp_path / "a.mp4")},
            ],
            "model": {"path": str(tmp_path / "m.onnx")},
            "sink": {"redis": {"spool_path": str(tmp_path / "site.spool")}},
        },
        "test",
    )
    mine = shard_config(config, ["file"], "shard-1", cores=1)
    assert [s.id for s in mine.sources] == ["file"]
    assert mine.sources[0].realtime is True  # a live pipeline paces its files
    assert mine.redis is not None and mine.redis.spool_path == tmp_path / "site.shard-1.spool"
    assert (mine.model.workers, mine.model.threads) == (1, 1)
    assert (shard_config(config, ["door"], "shard-0", cores=4).model.threads or 0) >= 1
    pinned = config.model_copy(update={"model": config.model.model_copy(update={"threads": 3})})
    assert shard_config(pinned, ["door"], "shard-0", cores=1).model.threads == 3
