"""Camera health and detection drift (DESIGN.md section 12), end to end: fault clips made
from real footage, the real model, a real `redis-server`, events read back from the stream.

Each fault clip goes wrong at ONSET_S and comes right at END_S (the frozen one is frozen
for 20 s); each must raise its own condition, and only it, within 10 s of the onset by
the clip's clock, and clear it after the end. The clean clips raise nothing at all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer import Pipeline
from streamer.config.loader import parse_config
from streamer.config.schema import HealthConfig
from streamer.errors import ConfigError
from streamer.events.event import AlertState, DriftFeature, HealthCondition
from streamer.observability.server import OperatorServer
from streamer.quality.camera import CameraWatch
from streamer.quality.conditions import Alarm, Rule
from streamer.quality.drift import DriftRules, DriftWatch, Histograms, js_divergence
from streamer.quality.profiles import SourceProfile, load_profiles, save_profiles
from streamer.quality.settings import camera_rules
from streamer.runtime.messages import Frame
from tests.conftest import (
    DEMO_CLIP,
    by_source,
    read_events,
    run_cli,
    run_with_stats,
    sources_pipeline,
    wait_until,
)
from tests.test_preview import get, health, near, screenshot
from tools.fault_clips import RAISES, Fault, make_fault_clips
from tools.make_sample_video import write_clip
from tools.scenes import Scene, SceneObject

pytestmark = pytest.mark.timeout(600)

ONSET_S, END_S = 12.0, 32.0  # the fault's span in every fault clip: frozen for 20 s
LENGTH_S = 40.0
RAISE_WITHIN_S = 10.0
HEALTH = "health:\n  baseline_s: 8\n"
RAISED_COLOUR = (51, 187, 255)  # BGR of the page's amber (#fb3)


def fault_clips(folder: Path, source: Path, loops: int) -> dict[str, Path]:
    clips = make_fault_clips(source, folder, ONSET_S, END_S, loops, LENGTH_S)
    return {str(fault): path for fault, path in clips.items()}


def health_events(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per source, its camera_health and drift events, in order."""
    return {
        sid: [e for e in evs if e["type"] in ("camera_health", "drift")]
        for sid, evs in by_source(events).items()
    }


def assert_each_fault_raises_only_its_own(events: list[dict[str, Any]]) -> None:
    seen = health_events(events)
    for fault, condition in RAISES.items():
        health = [e for e in seen.get(str(fault), []) if e["type"] == "camera_health"]
        if condition is None:
            assert seen.get(str(fault), []) == [], f"the clean clip raised {seen[str(fault)]}"
            continue
        changes = [(e["health"]["condition"], e["health"]["state"], e["frame"]["pts"])
                   for e in health]  # fmt: skip
        assert [(c, s) for c, s, _ in changes] == [(condition, "raised"), (condition, "cleared")], (
            f"{fault}: {changes}"
        )
        raised_pts, cleared_pts = changes[0][2], changes[1][2]
        assert ONSET_S <= raised_pts <= ONSET_S + RAISE_WITHIN_S, f"{fault}: raised at {raised_pts}"
        assert END_S <= cleared_pts <= END_S + RAISE_WITHIN_S, f"{fault}: cleared at {cleared_pts}"
        raised = health[0]["health"]
        assert raised["since"] <= health[0]["emitted_at"]
        assert raised["value"] != raised["threshold"]


@pytest.fixture(scope="module")
def demo_faults(tmp_path_factory) -> dict[str, Path]:
    """The repository's clip, played twice (40 s), with each fault."""
    return fault_clips(tmp_path_factory.mktemp("demo-faults"), DEMO_CLIP, loops=2)


def test_each_fault_raises_its_own_condition_offline(
    tmp_path, demo_faults, demo_model, redis_server, redis_client
):
    """Decimated to 5 frames a second (`max_fps`), as a site saving compute would: the
    4 pictures a second the watcher measures are among them."""
    pipeline = sources_pipeline(
        tmp_path, "faults", {k: str(v) for k, v in demo_faults.items()}, demo_model,
        extra=HEALTH + "  drift: {enabled: false}\n", emit="[object_appeared]",
        source_extra=", max_fps: 5",
    )  # fmt: skip
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert result.returncode == 0, result.stderr
    events = read_events(redis_client, "streamer:faults:events")
    assert_each_fault_raises_only_its_own(events)
    # The stats file's `health` section: each source's measures; what is raised at the end.
    health = stats["health"]
    assert set(health) == set(demo_faults)
    assert health["clean"]["raised"] == []
    assert set(health["clean"]["conditions"]) == {c.value for c in HealthCondition}
    assert "frozen" not in health["frozen"]["raised"]  # it recovered before the end


def test_each_fault_raises_its_own_condition_live(
    tmp_path_factory, person_clip, yolox_nano, redis_server, redis_client
):
    """Real footage paced like cameras: the model cannot keep up with seven of them on two
    cores and drops frames, but every decoded picture is watched."""
    folder = tmp_path_factory.mktemp("person-faults")
    clips = fault_clips(folder, person_clip, loops=1)
    pipeline = sources_pipeline(
        folder, "live-faults", {k: str(v) for k, v in clips.items()}, yolox_nano,
        extra=HEALTH + "  drift: {enabled: false}\n", emit="[object_appeared]",
    )  # fmt: skip
    result, _stats = run_with_stats(pipeline, redis_server.url, "--realtime")
    assert result.returncode == 0, result.stderr
    assert_each_fault_raises_only_its_own(read_events(redis_client, "streamer:live-faults:events"))


def test_the_preview_page_and_metrics_mark_a_camera_with_a_raised_condition(tmp_path, demo_model):
    black = make_fault_clips(
        DEMO_CLIP, tmp_path, 3.0, 60.0, loops=2, length_s=30.0, faults=[Fault.BLACK]
    )[Fault.BLACK]
    file = sources_pipeline(
        tmp_path, "site", {"cam1": str(black)}, demo_model,
        extra="health: {baseline_s: 1, drift: {enabled: false}}\nsink: none\n",
    )  # fmt: skip
    pipeline = Pipeline.from_file(file, realtime=True, on_event=lambda _event: None)
    with OperatorServer(pipeline) as server, pipeline:
        pipeline.start()

        def raised() -> bool:
            return health(server.url)[1]["sources"]["cam1"]["raised"] == ["blackout"]

        wait_until(raised, 20, "/healthz to list the blackout")
        assert health(server.url)[0] == 200  # the camera needs a person, the run is fine
        page = screenshot(server.url, tmp_path / "page.png")
        assert near(page, RAISED_COLOUR, tolerance=30) > 1000, "the camera is not marked"
        metrics = get(server.url + "metrics")[1].decode()
    assert 'streamer_camera_health_raised{condition="blackout",source="cam1"} 1.0' in metrics
    assert 'streamer_camera_health_raised{condition="blur",source="cam1"} 0.0' in metrics


def cars_scene(duration_s: float) -> Scene:
    """The demo clip's parking lot with only cars driving through: another class mix."""
    cars = tuple(
        SceneObject("car", ((-120, 230 + 60 * (i % 2)), (760, 230 + 60 * (i % 2))), speed=160,
                    size=150, colour=(30 + 40 * i % 200, 60, 160), start_s=2.0 * i)
        for i in range(int(duration_s / 2) - 1)
    )  # fmt: skip
    return Scene(640, 360, 15, duration_s, cars, seed=7, kerb_y=0.25)


def test_a_changed_scene_drifts_against_a_recorded_profile(
    tmp_path, demo_faults, demo_model, redis_server, redis_client
):
    """`streamer profile` records the demo clip as the good day of two cameras; one keeps
    showing it (twice over), the other's scene changes to cars only: that one drifts
    within two windows, the other raises nothing. A window is the clip's length: the
    scene's own activity varies within it (cars come and go)."""
    profile_file = tmp_path / "good-day.json"
    learn = sources_pipeline(
        tmp_path, "lot", {"same": str(DEMO_CLIP), "changed": str(DEMO_CLIP)}, demo_model,
        extra="health: {}\n",
    )  # fmt: skip
    result = run_cli("profile", str(learn), "-o", str(profile_file))
    assert result.returncode == 0, result.stderr
    assert "profile of 2 source(s)" in result.stdout
    # Ten seconds of cars rendered, played five times over.
    write_clip(cars_scene(10.0), tmp_path / "cars.mp4")
    cars = make_fault_clips(
        tmp_path / "cars.mp4", tmp_path, 0.0, 0.0, loops=5, faults=[Fault.CLEAN]
    )[Fault.CLEAN]
    window_s = 20.0
    pipeline = sources_pipeline(
        tmp_path, "lot", {"same": str(demo_faults["clean"]), "changed": str(cars)}, demo_model,
        extra=f"health:\n  profile: {profile_file}\n  drift: {{window_s: {window_s}}}\n",
        emit="[object_appeared]",
    )  # fmt: skip
    result, stats = run_with_stats(pipeline, redis_server.url)
    assert result.returncode == 0, result.stderr
    seen = health_events(read_events(redis_client, "streamer:lot:events"))
    assert seen.get("same", []) == []
    assert set(stats["health"]["same"]["drift"]) == {f.value for f in DriftFeature}
    drift = [e for e in seen["changed"] if e["type"] == "drift"]
    assert drift, seen["changed"]
    first = drift[0]
    assert first["drift"]["state"] == "raised"
    assert first["frame"]["pts"] <= 2 * window_s + 1
    features = {e["drift"]["feature"] for e in drift if e["drift"]["state"] == "raised"}
    assert DriftFeature.CLASS_MIX in features
    assert f"drift:{DriftFeature.CLASS_MIX}" in stats["health"]["changed"]["raised"]
    tail = run_cli(
        "events", "tail", "--redis-url", redis_server.url, "--stream", "streamer:lot:events"
    )
    assert tail.returncode == 0, tail.stderr
    assert re.search(
        r" changed #\d+ drift class_mix raised \(score 0\.\d+, threshold 0\.2\)", tail.stdout
    )


def test_a_profile_of_another_version_or_model_is_refused(tmp_path, demo_model):
    profile_file = tmp_path / "old.json"
    profile_file.write_text(json.dumps({"version": 0, "sources": {}}))
    pipeline = sources_pipeline(
        tmp_path, "p", {"cam": str(DEMO_CLIP)}, demo_model,
        extra=f"health: {{profile: {profile_file.name}}}\n",
    )  # fmt: skip
    result = run_cli("validate", str(pipeline))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("streamer: error")]
    assert len(errors) == 1 and "not a profile of version 1" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    save_profiles(profile_file, "p", ("cat", "dog"), {"cam": SourceProfile(None, None)})
    with pytest.raises(ConfigError, match="other labels"):
        load_profiles(profile_file, ("person", "car"))


# Pure logic: the section, the hysteresis, the divergence, the round trip of a profile.


def test_the_health_section_takes_true_false_and_changes_to_defaults():
    base = {"name": "p", "sources": [{"id": "a", "uri": "a.mp4"}], "model": {"path": "m.onnx"}}
    assert parse_config({**base, "health": True}, "p.yaml").health == HealthConfig()
    assert parse_config({**base, "health": False}, "p.yaml").health is None
    changed = {"conditions": {"frozen": {"hold_s": 10}, "blur": {"enabled": False}}}
    health = parse_config({**base, "health": changed}, "p.yaml").health
    assert health is not None
    rules = camera_rules(health)
    assert HealthCondition.BLUR not in rules
    assert rules[HealthCondition.FROZEN][0].hold_s == 10
    assert rules[HealthCondition.FROZEN][0].threshold == 0.005  # the rest as by default
    with pytest.raises(ConfigError, match=r"health\.conditions\.smoke"):
        parse_config({**base, "health": {"conditions": {"smoke": {}}}}, "p.yaml")
    with pytest.raises(ConfigError, match="emitted by the `health:` section"):
        parse_config({**base, "events": {"emit": ["drift"]}}, "p.yaml")


def test_an_alarm_raises_after_its_hold_and_clears_after_its_own():
    alarm = Alarm((Rule(0.5, 0.6, below=True, hold_s=2.0, clear_s=1.0),))
    assert alarm.update(0.4, 0.0) is None
    assert alarm.update(0.55, 1.0) is None  # back above: the hold starts again
    assert alarm.update(0.4, 2.0) is None
    assert alarm.update(0.4, 3.9) is None
    raised = alarm.update(0.3, 4.0)
    assert raised is not None and raised.state is AlertState.RAISED and raised.at_s == 2.0
    assert alarm.update(0.55, 5.0) is None  # above the threshold, not above clear_at
    assert alarm.update(0.7, 6.0) is None
    cleared = alarm.update(0.7, 7.0)
    assert cleared is not None and cleared.state is AlertState.CLEARED and cleared.at_s == 6.0
    assert cleared.threshold == 0.6


def test_brightness_is_judged_both_ways():
    rules = camera_rules(HealthConfig())[HealthCondition.BRIGHTNESS]
    dark, bright = rules
    assert dark.crossed(0.4) and not dark.crossed(1.0)
    assert bright.crossed(2.5) and not bright.crossed(1.0)
    assert bright.threshold == pytest.approx(2.0)


def test_js_divergence_is_bounded_and_symmetric():
    p, q = np.array([10.0, 0, 0]), np.array([0.0, 0, 5])
    assert js_divergence(p, q) == pytest.approx(1.0)
    assert js_divergence(p, p * 3) == pytest.approx(0.0)
    a, b = np.array([3.0, 1, 1]), np.array([1.0, 1, 3])
    assert js_divergence(a, b) == pytest.approx(js_divergence(b, a))


def test_a_quiet_window_is_not_judged():
    rules = DriftRules(10.0, {DriftFeature.CLASS_MIX: 0.1}, min_frames=5, min_boxes=20)
    watch = DriftWatch("cam", 2, rules, baseline_s=10.0)
    one = (np.array([0.9]), np.array([0]), np.array([0.01]))
    none = (np.array([]), np.array([], dtype=np.int64), np.array([]))
    for t in range(0, 20):
        watch.observe(float(t), 1e9 + t, *one)  # the baseline: a box every frame
    changes = []
    for t in range(20, 60):
        changes += watch.observe(float(t), 1e9 + t, *none) or []  # night: nothing
    assert changes == []
    assert watch.reference is not None and watch.reference.boxes == 20


def test_a_profile_round_trips(tmp_path):
    watch = CameraWatch("cam", camera_rules(HealthConfig()), 4.0, baseline_s=1.0)
    picture = np.random.default_rng(1).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    for i in range(8):
        frame = Frame("cam", i, i / 4, 0, 1e9, None, picture, i / 4)
        watch.observe(frame)
    reference = watch.learnt()
    assert reference is not None
    histograms = Histograms(2)
    histograms.add(np.array([0.5, 0.7]), np.array([0, 1]), np.array([0.01, 0.2]))
    path = tmp_path / "p.json"
    save_profiles(path, "p", ("a", "b"), {"cam": SourceProfile(reference, histograms)})
    loaded = load_profiles(path, ("a", "b"))["cam"]
    assert loaded.picture is not None and loaded.detections is not None
    assert loaded.picture.brightness == pytest.approx(reference.brightness)
    np.testing.assert_allclose(loaded.picture.structure, reference.structure, atol=1e-3)
    assert loaded.detections.to_dict() == histograms.to_dict()
