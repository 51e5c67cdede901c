"""The reserve a frame needs before its deadline: pure logic, on a fake clock."""

from __future__ import annotations

import pytest

from streamer.runtime import deadlines
from streamer.runtime.clock import FakeClock
from streamer.runtime.deadlines import HEADROOM, WorkEstimate, is_expired

pytestmark = pytest.mark.timeout(10)

MS = 1_000_000


def test_the_reserve_grows_with_the_batch_a_frame_joins():
    estimate = WorkEstimate(FakeClock())
    estimate.record_inference(400 * MS, frames=4)  # 100 ms a frame
    estimate.record_postprocess(2 * MS)
    assert estimate.reserve_ns(1) == int(HEADROOM * 100 * MS) + 2 * MS
    assert estimate.reserve_ns(4) == 4 * estimate.reserve_ns(1)


def test_one_slow_batch_of_four_leaves_room_for_a_frame_that_runs_alone():
    """A 400 ms batch of four, 450 ms left: a frame still gets through, though not into
    another batch of four."""
    clock = FakeClock()
    estimate = WorkEstimate(clock)
    estimate.record_inference(400 * MS, frames=4)
    now = clock.monotonic_ns()
    assert not is_expired(now + 450 * MS, now, estimate.reserve_ns(1))
    assert is_expired(now + 450 * MS, now, estimate.reserve_ns(4))


def test_the_slowest_recent_call_counts_and_an_old_one_is_forgotten():
    clock = FakeClock()
    estimate = WorkEstimate(clock)
    estimate.record_inference(10 * MS, frames=1)
    estimate.record_inference(600 * MS, frames=1)  # an outlier: every frame looks hopeless
    estimate.record_inference(10 * MS, frames=1)
    assert estimate.reserve_ns(1) == int(HEADROOM * 600 * MS)
    clock.advance(deadlines.MEMORY_S - 0.01)
    assert estimate.reserve_ns(1) == int(HEADROOM * 600 * MS)
    clock.advance(0.02)
    assert estimate.reserve_ns(1) == 0  # nothing recent: frames are let through again


def test_a_slow_models_timing_outlives_the_memory_for_a_few_of_its_calls():
    clock = FakeClock()
    estimate = WorkEstimate(clock)
    call_s = deadlines.MEMORY_S  # remembered for MEMORY_CALLS such calls, past MEMORY_S
    estimate.record_inference(int(call_s * 1e9), frames=1)
    clock.advance(1.5 * deadlines.MEMORY_S)
    assert estimate.reserve_ns(1) == int(HEADROOM * call_s * 1e9)
    clock.advance(deadlines.MEMORY_CALLS * call_s - 1.5 * deadlines.MEMORY_S + 0.01)
    assert estimate.reserve_ns(1) == 0


def test_the_warm_ups_timing_counts_from_the_first_frame():
    """A camera's first frame can come seconds after the warm-up: its timing is still the
    estimate then, and ages like any timing from that first frame on."""
    clock = FakeClock()
    estimate = WorkEstimate(clock)
    estimate.seed_inference(8 * MS, frames=4)  # 2 ms a frame
    clock.advance(5.0)  # connecting to the camera: no frame yet
    assert estimate.reserve_ns(2) == 2 * int(HEADROOM * 2 * MS)  # the first frame asks
    clock.advance(deadlines.MEMORY_S + 0.01)
    assert estimate.reserve_ns(1) == 0  # aged out since the first frame


def test_the_longest_recent_wait_for_postprocessing_is_reserved_once_per_batch():
    """A finished frame that waited for the postprocessing thread (or for an earlier
    batch) shows the time after the model call that the call's timing does not."""
    estimate = WorkEstimate(FakeClock())
    estimate.record_inference(100 * MS, 1)
    estimate.record_wait(30 * MS)
    estimate.record_wait(10 * MS)
    estimate.record_wait(-1)  # clocks never run back; a negative wait counts as none
    assert estimate.reserve_ns(1) == int(HEADROOM * 100 * MS) + 30 * MS
    assert estimate.reserve_ns(4) == 4 * int(HEADROOM * 100 * MS) + 30 * MS
