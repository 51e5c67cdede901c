"""`streamer.Pipeline` as a library: its lifecycle, in-process events, and the same
results as the command line, on the repository's clip and model with a real redis-server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer import (
    Event,
    EventType,
    Pipeline,
    PipelineFailed,
    PipelineState,
    SourceState,
    StreamerError,
)
from streamer.config import load_config
from streamer.models import Model
from streamer.pipeline.build import build
from streamer.pipeline.lifecycle import DRAIN_TIMEOUT_S
from streamer.runtime.clock import SYSTEM_CLOCK
from tests.conftest import (
    DEMO_FRAMES,
    EVENT_VALIDATOR,
    REPO,
    read_events,
    run_with_stats,
    write_pipeline,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def two_cameras(folder: Path, clip: Path, model: Path, sink: str = "") -> Path:
    """Two sources on the clip, tracked objects in a zone and over a line, every box too."""
    return write_pipeline(
        folder / "lot.yaml",
        f"""name: lot
sources:
  - {{id: north, uri: '{clip}'}}
  - {{id: south, uri: '{clip}', max_fps: 5}}
model: {{path: '{model}', confidence: 0.35}}
events:
  emit: [object_appeared, object_left, zone_entered, zone_exited, line_crossed, detections]
zones:
  - {{name: lot, polygon: [[0, 200], [640, 200], [640, 360], [0, 360]]}}
lines:
  - {{name: kerb, points: [[0, 250], [640, 250]]}}
{sink}""",
    )


def kinds(events: list[Any]) -> Counter[tuple[str, str]]:
    """How many events of each type each source gave."""
    return Counter((str(e["source"]), str(e["type"])) for e in events)


def test_the_api_and_the_cli_give_the_same_events(tmp_path, demo_clip, demo_model, redis_server,
                                                   redis_client):  # fmt: skip
    path = two_cameras(tmp_path, demo_clip, demo_model)
    result, cli_stats = run_with_stats(path, redis_server.url)
    assert result.returncode == 0, result.stderr
    from_cli = read_events(redis_client, "streamer:lot:events")
    redis_client.flushdb()

    stats = Pipeline.from_file(path, redis_url=redis_server.url).run()
    from_api = read_events(redis_client, "streamer:lot:events")

    assert kinds(from_api) == kinds(from_cli)
    assert kinds(from_api)[("north", "detections")] == DEMO_FRAMES
    assert kinds(from_api)[("north", "object_appeared")] > 0
    assert kinds(from_api)[("south", "line_crossed")] > 0
    for key in ("frames", "events", "objects", "zones", "lines"):
        assert stats[key] == cli_stats[key], key


def test_without_redis_on_event_gets_every_event_in_order(tmp_path, demo_clip, demo_model):
    path = two_cameras(tmp_path, demo_clip, demo_model, sink="sink: none\n")
    got: list[Event] = []
    delivering = set()

    def on_event(event: Event) -> None:
        delivering.add(threading.current_thread().name)
        got.append(event)

    pipeline = Pipeline.from_file(path, on_event=on_event)
    stats = pipeline.run()
    assert pipeline.state is PipelineState.STOPPED
    assert delivering == {"streamer.deliver"}
    assert stats["events"] == {"emitted": len(got), "delivered": len(got), "lost": 0}
    for source in ("north", "south"):
        mine = [e for e in got if e.source == source]
        assert [e.seq for e in mine] == list(range(1, len(mine) + 1))
        first, last = mine[0], mine[-1]
        assert (first.type, first.status) == (EventType.SOURCE_STATUS, SourceState.CONNECTED)
        assert (last.type, last.status) == (EventType.SOURCE_STATUS, SourceState.ENDED)
    assert Counter(e.type for e in got if e.source == "north")[EventType.DETECTIONS] == DEMO_FRAMES
    assert {e.run for e in got} == {pipeline.run_id}
    for event in got:
        EVENT_VALIDATOR.validate(event.to_dict())
        assert Event.from_dict(event.to_dict()) == event


def test_events_iterates_and_starts_the_pipeline(tmp_path, demo_clip, demo_model):
    path = two_cameras(tmp_path, demo_clip, demo_model, sink="sink: none\n")
    with Pipeline.from_file(path, max_frames=30) as pipeline:
        assert pipeline.state is PipelineState.CREATED
        events = list(pipeline.events(max_queued=4))  # a small queue: the pipeline waits
    assert pipeline.state is PipelineState.STOPPED
    per_source = Counter((e.source, e.type) for e in events)
    assert per_source[("north", EventType.DETECTIONS)] == 30
    assert per_source[("south", EventType.DETECTIONS)] == 10  # 30 frames at 15 fps, kept 5 fps
    assert pipeline.stats()["events"]["delivered"] == len(events)


def test_without_redis_nothing_to_read_the_events_is_refused(tmp_path, demo_clip, demo_model):
    path = two_cameras(tmp_path, demo_clip, demo_model)
    pipeline = Pipeline.from_file(path, redis_url=None)
    with pytest.raises(StreamerError, match="nothing in process reads its events"):
        pipeline.start()
    pipeline.stop()
    assert pipeline.state is PipelineState.STOPPED


def test_start_twice_is_refused_and_stop_twice_is_harmless(tmp_path, demo_clip, demo_model,
                                                           redis_server):  # fmt: skip
    path = two_cameras(tmp_path, demo_clip, demo_model)
    pipeline = Pipeline.from_file(path, redis_url=redis_server.url, realtime=True)
    with pytest.raises(RuntimeError, match="has not started"):
        pipeline.join()
    pipeline.start()
    assert pipeline.state is PipelineState.RUNNING
    with pytest.raises(RuntimeError, match="a pipeline runs once"):
        pipeline.start()
    pipeline.stop(wait=False)
    assert pipeline.state in (PipelineState.DRAINING, PipelineState.STOPPED)
    pipeline.stop()
    pipeline.stop()
    assert pipeline.state is PipelineState.STOPPED
    assert pipeline.join(0)
    with pytest.raises(RuntimeError, match="a pipeline runs once"):
        pipeline.start()
    events = pipeline.stats()["events"]
    assert events["emitted"] == events["delivered"] + events["lost"]


def test_a_source_that_fails_fails_the_run_and_says_why(tmp_path, demo_clip, demo_model):
    """A file that is gone by the time the run starts: the other source runs to its end."""
    doomed = tmp_path / "doomed.mp4"
    doomed.write_bytes(demo_clip.read_bytes())
    path = write_pipeline(
        tmp_path / "two.yaml",
        f"name: two\nsink: none\nevents: {{emit: [detections]}}\n"
        f"sources:\n  - {{id: ok, uri: '{demo_clip}'}}\n  - {{id: gone, uri: '{doomed}'}}\n"
        f"model: {{path: '{demo_model}'}}\n",
    )
    got: list[Event] = []
    pipeline = Pipeline.from_file(path, on_event=got.append)
    doomed.unlink()
    with pytest.raises(PipelineFailed, match=r"^source\(s\) failed: gone$") as failed:
        pipeline.run()
    assert isinstance(failed.value.__cause__, OSError)
    assert pipeline.state is PipelineState.FAILED
    assert Counter(e.type for e in got if e.source == "ok")[EventType.DETECTIONS] == DEMO_FRAMES


class FailingModel(Model):
    """The repository's model, failing from its `fail_at`-th call on, as a GPU that
    faults or a driver that is reset mid-run does."""

    def __init__(self, model: Model, fail_at: int) -> None:
        super().__init__(model.path, model._sessions, model.spec)
        self.calls = 0
        self.fail_at = fail_at

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().run(batch)


def test_a_model_that_fails_mid_run_reaches_join_with_its_cause(tmp_path, demo_clip, demo_model,
                                                                redis_server):  # fmt: skip
    config = load_config(two_cameras(tmp_path, demo_clip, demo_model))
    model = FailingModel(Model.from_config(config.model), fail_at=10)
    built = build(config, redis_url=redis_server.url, max_frames=None, on_event=None,
                  clock=SYSTEM_CLOCK, model=model)  # fmt: skip
    pipeline = Pipeline(config.name, built.run_id, built.parts)
    pipeline.start()
    with pytest.raises(PipelineFailed, match=r"streamer\.infer failed: CUDA error") as failed:
        pipeline.join(60)
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert pipeline.state is PipelineState.FAILED
    stats = pipeline.stats()
    frames = stats["frames"]
    assert 0 < frames["processed"] < frames["decoded"]
    # Every frame and event is accounted for: processed, or counted as dropped or lost.
    assert frames["processed"] + sum(frames["dropped"].values()) == frames["decoded"]
    events = stats["events"]
    assert events["emitted"] == events["delivered"] + events["lost"]


def test_an_on_event_that_raises_fails_the_run(tmp_path, demo_clip, demo_model):
    path = two_cameras(tmp_path, demo_clip, demo_model, sink="sink: none\n")

    def on_event(event: Event) -> None:
        if event.type is EventType.DETECTIONS:
            raise KeyError("no such camera in my table")

    with pytest.raises(PipelineFailed, match="on_event raised KeyError") as failed:
        Pipeline.from_file(path, on_event=on_event).run()
    assert isinstance(failed.value.__cause__.__cause__, KeyError)


def test_with_stops_at_once_when_its_block_raises(tmp_path, demo_clip, demo_model, redis_server):
    path = two_cameras(tmp_path, demo_clip, demo_model)
    pipeline = Pipeline.from_file(path, redis_url=redis_server.url, realtime=True)
    raised_at = 0.0
    with pytest.raises(ValueError, match="the consumer's own bug"), pipeline:
        for i, _event in enumerate(pipeline.events()):
            if i == 20:
                raised_at = time.monotonic()
                raise ValueError("the consumer's own bug")
    assert time.monotonic() - raised_at < DRAIN_TIMEOUT_S / 2  # at once, not drained
    assert pipeline.state is PipelineState.STOPPED
    assert pipeline.threads_alive() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("streamer.")]
    stats = pipeline.stats()
    assert stats["frames"]["decoded"] < DEMO_FRAMES  # cut short, not drained to the end
    assert stats["events"]["emitted"] == stats["events"]["delivered"] + stats["events"]["lost"]


def test_leaving_the_events_loop_early_leaves_the_pipeline_running(tmp_path, demo_clip,
                                                                   demo_model):  # fmt: skip
    path = two_cameras(tmp_path, demo_clip, demo_model, sink="sink: none\n")
    seen: list[Event] = []
    with Pipeline.from_file(path, on_event=seen.append) as pipeline:
        for _event in pipeline.events(max_queued=1):
            break  # unsubscribed: the pipeline does not wait for this reader any more
        assert pipeline.join(120)
    assert Counter(e.type for e in seen if e.source == "north")[EventType.DETECTIONS] == DEMO_FRAMES


def test_an_events_iterator_dropped_unread_does_not_hold_the_pipeline_up(tmp_path, demo_clip,
                                                                         demo_model):  # fmt: skip
    path = two_cameras(tmp_path, demo_clip, demo_model, sink="sink: none\n")
    seen: list[Event] = []
    pipeline = Pipeline.from_file(path, on_event=seen.append, max_frames=60)
    pipeline.events(max_queued=1)  # made, never read, dropped
    assert pipeline.run()["frames"]["processed"] == 60 + 20
    assert len(seen) == pipeline.stats()["events"]["delivered"]


def test_stop_inside_an_events_loop_drains_and_the_loop_ends(tmp_path, demo_clip, demo_model):
    path = two_cameras(tmp_path, demo_clip, demo_model, sink="sink: none\n")
    pipeline = Pipeline.from_file(path, realtime=True)
    stopped_at = 0.0
    after_stop: list[Event] = []
    for event in pipeline.events(max_queued=2):
        if pipeline.state is PipelineState.RUNNING and event.type is EventType.DETECTIONS:
            stopped_at = time.monotonic()
            pipeline.stop()  # returns at once: this loop is what takes the events
        elif pipeline.state is not PipelineState.RUNNING:
            after_stop.append(event)
    assert pipeline.join(DRAIN_TIMEOUT_S)
    assert time.monotonic() - stopped_at < DRAIN_TIMEOUT_S  # drained, not cut short
    assert pipeline.state is PipelineState.STOPPED
    for source in ("north", "south"):  # each source's stream ended after the stop
        last = [e for e in after_stop if e.source == source][-1]
        assert (last.type, last.status) == (EventType.SOURCE_STATUS, SourceState.ENDED)
    events = pipeline.stats()["events"]
    assert events["emitted"] == events["delivered"] and events["lost"] == 0


def test_stop_inside_on_event_ends_the_run(tmp_path, demo_clip, demo_model):
    path = two_cameras(tmp_path, demo_clip, demo_model, sink="sink: none\n")
    seen: list[Event] = []

    stopped_at: list[float] = []

    def on_event(event: Event) -> None:
        seen.append(event)
        if len(seen) == 10:
            stopped_at.append(time.monotonic())
            pipeline.stop()

    pipeline = Pipeline.from_file(path, on_event=on_event, realtime=True)
    stats = pipeline.run()
    assert time.monotonic() - stopped_at[0] < DRAIN_TIMEOUT_S  # drained, not cut short
    assert stats["frames"]["decoded"] < DEMO_FRAMES
    assert stats["events"]["delivered"] == len(seen)


def test_errors_at_build_name_the_file_and_field(tmp_path, demo_clip, demo_model):
    path = two_cameras(tmp_path, demo_clip, demo_model, sink="sink: none\n")
    with pytest.raises(StreamerError, match=r"lot\.yaml: --source nope=: empty URI"):
        Pipeline.from_file(path, source=["nope="])
    with pytest.raises(StreamerError, match="max_frames must be at least 1"):
        Pipeline.from_file(path, max_frames=0)
    with pytest.raises(StreamerError, match=r"missing\.onnx"):
        Pipeline.from_file(path, model=tmp_path / "missing.onnx")


def readme_python_example() -> str:
    """The README's Python example: the first ```python block."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "the README has no Python example"
    return match.group(1)


def test_the_readmes_python_example_runs_as_written():
    code = readme_python_example()
    assert len(code.strip().splitlines()) <= 10
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("parking person") for line in lines), proc.stdout
    assert "'lost': 0" in lines[-1], lines[-1]


def test_the_cli_prints_the_events_of_a_pipeline_without_redis(
    tmp_path, demo_clip, demo_model, redis_server, redis_client
):
    path = two_cameras(tmp_path, demo_clip, demo_model, sink="sink: none\n")
    result, stats = run_with_stats(path, "", "--max-frames", "30")
    assert result.returncode == 0, result.stderr
    printed = [Event.from_dict(json.loads(line)) for line in result.stdout.splitlines()]
    assert len(printed) == stats["events"]["delivered"] == stats["events"]["emitted"]
    assert Counter(e.type for e in printed)[EventType.DETECTIONS] == 30 + 10
    assert "writing events to stdout" in result.stderr
    assert redis_client.keys("*") == []
    # --redis-url names a Redis: the events go there instead.
    result, stats = run_with_stats(path, redis_server.url, "--max-frames", "30")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert len(read_events(redis_client, "streamer:lot:events")) == stats["events"]["delivered"]
