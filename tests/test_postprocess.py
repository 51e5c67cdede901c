"""The postprocess stage and the queue plans, on a fake clock: timing without sleeping.

The stage is fed model outputs made by hand for the repository's model (one box per
frame, or none), so what it does with time is all that varies."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from streamer.analytics.rules import rules_by_source
from streamer.config import parse_config
from streamer.events.event import EventType, LeftReason, SourceState
from streamer.events.factory import EventFactory
from streamer.models import Model
from streamer.pipeline.plans import QueuePlan, plan_queues
from streamer.preview.board import FrameBoard
from streamer.preview.drawing import regions_by_source
from streamer.runtime.clock import FakeClock
from streamer.runtime.deadlines import WorkEstimate
from streamer.runtime.messages import (
    Emitted,
    EndOfStream,
    EndReason,
    Frame,
    Inferred,
    Letterbox,
    Prepared,
    SourceStatus,
)
from streamer.runtime.queues import Overflow
from streamer.runtime.stats import RunStats
from streamer.stages.postprocess import DetectionRules, PostprocessStage
from tests.conftest import DEMO_MODEL

pytestmark = pytest.mark.timeout(30)

FPS = 15
INPUT_HW = (192, 320)  # the repository's model on a 640x360 frame
ANCHORS = 1260


def config(**extra: object):
    return parse_config(
        {
            "name": "p",
            "sources": [{"id": "cam", "uri": "cam.mp4"}, {"id": "other", "uri": "o.mp4"}],
            "model": {"path": "m.onnx", "confidence": 0.35},
            **extra,
        },
        "p.yaml",
    )


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load(DEMO_MODEL, providers=("cpu",), workers=1, threads=1)


def output(person_at: tuple[float, float] | None) -> np.ndarray:
    """The model's output for a frame showing one person centred at `person_at` (input
    pixels), or nothing."""
    out = np.zeros((6, ANCHORS), np.float32)
    if person_at is not None:
        out[:4, 0] = (*person_at, 20, 60)
        out[4, 0] = 0.9
    return out


class Camera:
    """Frames of one source, stamped on the fake clock as a live camera's are."""

    def __init__(self, clock: FakeClock, source_id: str = "cam") -> None:
        self.clock = clock
        self.source_id = source_id
        self.index = 0

    def frame(self, person_at: tuple[float, float] | None) -> Inferred:
        now = self.clock.monotonic_ns()
        frame = Frame(self.source_id, self.index, self.index / FPS, now, self.clock.time(),
                      None, np.zeros((360, 640, 3), np.uint8), now / 1e9)  # fmt: skip
        self.index += 1
        tensor = np.zeros((3, *INPUT_HW), np.float32)
        return Inferred(
            Prepared(frame, tensor, Letterbox(0.5, 0.5, 0, 6)), output(person_at), False, now
        )


def stage(model: Model, clock: FakeClock, emit: Iterable[EventType]):
    cfg = config(events={"emit": [str(t) for t in emit]})
    stats = RunStats(["cam", "other"], clock)
    post = PostprocessStage(
        model,
        DetectionRules.from_config(cfg, model.spec),
        EventFactory("p", "RUN", model.spec.labels, clock),
        frozenset(cfg.events.emit),
        cfg.model.confidence,
        rules_by_source(cfg, [], [], model.spec.labels),
        WorkEstimate(clock),
        stats,
        FrameBoard(model.spec.labels, regions_by_source(cfg)),
        clock,
    )
    return post, stats


def test_a_frame_without_events_ends_its_latency_in_postprocessing(model):
    clock = FakeClock()
    post, stats = stage(model, clock, emit=[EventType.OBJECT_APPEARED])
    camera = Camera(clock)
    item = camera.frame(None)
    clock.advance(0.25)  # what decoding, waiting and inference took
    assert list(post.process(item)) == []
    snapshot = stats.snapshot()
    assert snapshot["frames"]["processed"] == 1
    assert snapshot["latency_ms"]["max"] == pytest.approx(250.0)


def test_an_object_appears_after_its_confirmation_time_and_leaves_after_its_hidden_time(model):
    """tracking.confirm_hits 3, confirm_s 0.1 and max_hidden_s 5.0 (the defaults, for an
    object last seen inside the picture, which may be behind something) on the fake
    clock."""
    clock = FakeClock()
    post, stats = stage(model, clock, emit=[EventType.OBJECT_APPEARED, EventType.OBJECT_LEFT])
    camera = Camera(clock)
    seen: list[tuple[int, EventType]] = []
    for i in range(7 * FPS):
        person = (100.0 + i, 100.0) if i < FPS else None  # seen for 1 s, then gone
        for out in post.process(camera.frame(person)):
            seen.append((i, out.event))
        clock.advance(1 / FPS)
    (appeared, first), (left, last) = seen
    assert (first.type, last.type) == (EventType.OBJECT_APPEARED, EventType.OBJECT_LEFT)
    assert last.reason is LeftReason.LOST
    assert appeared == 2  # at its third frame, 0.13 s after its first
    last_seen = FPS - 1
    assert 5.0 <= (left - last_seen) / FPS <= 5.0 + 1.5 / FPS  # 5 s after its last frame
    assert stats.snapshot()["objects"] == {"appeared": 1, "left": 1, "active": 0}


def test_events_carry_the_clocks_time(model):
    clock = FakeClock(epoch_s=1_800_000_000.0)
    post, _ = stage(model, clock, emit=[EventType.DETECTIONS])
    clock.advance(12.5)
    (emitted,) = post.process(Camera(clock).frame((100.0, 100.0)))
    event = emitted.event
    assert (event.emitted_at, event.frame.captured_at) == (1_800_000_012.5, 1_800_000_012.5)
    assert [(o.label, o.bbox) for o in event.objects] == [("person", (180.0, 128.0, 220.0, 248.0))]


def test_a_camera_that_disconnects_ends_its_objects_and_no_others(model):
    clock = FakeClock()
    post, _ = stage(model, clock, emit=[EventType.OBJECT_APPEARED, EventType.OBJECT_LEFT])
    cam, other = Camera(clock), Camera(clock, "other")
    for _ in range(FPS):
        post.process(cam.frame((100.0, 100.0)))
        post.process(other.frame((200.0, 100.0)))
        clock.advance(1 / FPS)
    out = list(post.control(SourceStatus("cam", SourceState.DISCONNECTED, clock.time(), "eof")))
    assert [(o.event.type, o.event.source, o.event.reason) for o in out] == [
        (EventType.OBJECT_LEFT, "cam", LeftReason.DISCONNECTED),
        (EventType.SOURCE_STATUS, "cam", None),
    ]
    end = list(post.control(EndOfStream("other", EndReason.EOF)))
    assert [(o.event.type, o.event.reason) for o in end if isinstance(o, Emitted)] == [
        (EventType.OBJECT_LEFT, LeftReason.END_OF_STREAM)]  # fmt: skip
    assert end[-1] == EndOfStream("other", EndReason.EOF)  # passed on, after its events


def test_queue_plans_keep_the_freshest_frames_live_and_lose_nothing_offline():
    cfg = config()
    live = plan_queues(cfg, live=True, max_batch=4)
    assert live == {
        "decoded": QueuePlan(4, Overflow.DROP_OLDEST),  # 2 per source
        "prepared": QueuePlan(4, Overflow.DROP_OLDEST),  # one batch
        "inferred": QueuePlan(16, Overflow.BLOCK),
        "events": QueuePlan(4096, Overflow.BLOCK),
    }
    offline = plan_queues(cfg, live=False, max_batch=4)
    assert {plan.overflow for plan in offline.values()} == {Overflow.BLOCK}
    assert (offline["decoded"].size, offline["prepared"].size) == (16, 8)


def test_queue_plans_take_what_the_file_sets():
    cfg = config(queues={"decoded": {"size": 50, "overflow": "drop_newest"},
                         "events": {"size": 10}})  # fmt: skip
    plans = plan_queues(cfg, live=True, max_batch=4)
    assert plans["decoded"] == QueuePlan(50, Overflow.DROP_NEWEST)
    assert plans["events"] == QueuePlan(10, Overflow.BLOCK)
    assert plans["prepared"] == QueuePlan(4, Overflow.DROP_OLDEST)


@pytest.mark.parametrize(
    ("end", "reason"),
    [(EndReason.EOF, LeftReason.END_OF_STREAM), (EndReason.STOPPED, LeftReason.SHUTDOWN),
     (EndReason.FAILED, LeftReason.DISCONNECTED)],
)  # fmt: skip
def test_objects_of_a_source_that_ended_say_why_they_left(model, end, reason):
    clock = FakeClock()
    post, _ = stage(model, clock, emit=[EventType.OBJECT_LEFT])
    cam = Camera(clock)
    for _ in range(FPS):
        post.process(cam.frame((100.0, 100.0)))
        clock.advance(1 / FPS)
    out = list(post.control(SourceStatus("cam", SourceState.ENDED, clock.time(), end.value)))
    left = [
        o.event for o in out if isinstance(o, Emitted) and o.event.type is EventType.OBJECT_LEFT
    ]
    assert [e.reason for e in left] == [reason]
    assert left[0].to_dict()["reason"] == reason.value
