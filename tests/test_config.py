"""The pipeline schema: defaults, relative paths, overrides, one-line errors naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from streamer.config import load_config, parse_config, with_overrides
from streamer.config.overrides import parse_source_option
from streamer.errors import ConfigError
from streamer.runtime.queues import Overflow

MINIMAL = """
name: lobby
sources:
  - id: cam1
    uri: videos/a.mp4
model:
  path: models/m.onnx
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_minimal_file_gets_defaults_and_paths_relative_to_the_file(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.name == "lobby"
    assert config.sources[0].uri == str(tmp_path / "videos" / "a.mp4")
    assert config.sources[0].is_file
    assert config.model.path == tmp_path / "models" / "m.onnx"
    assert config.model.confidence == 0.25
    assert config.model.providers == ["tensorrt", "cuda", "cpu"]
    assert config.realtime.max_latency_ms == 500
    assert config.events.emit == [
        "object_appeared", "object_left", "zone_entered", "zone_exited", "line_crossed"
    ]  # fmt: skip
    assert config.sink.redis.stream == "streamer:{pipeline}:events"
    assert config.sink.redis.maxlen == 100_000


def test_urls_are_kept_as_they_are(tmp_path):
    text = MINIMAL.replace("videos/a.mp4", "rtsp://user:pw@10.0.0.7/stream1")
    source = load_config(write(tmp_path, text)).sources[0]
    assert source.uri == "rtsp://user:pw@10.0.0.7/stream1"
    assert not source.is_file


SOURCE_EXTRAS = """    uri: rtsp://cam/1
    realtime: true
    max_latency_ms: 300
    max_fps: 5
    skip_frames: nonref
    transport: udp
    open_timeout_s: 3
    read_timeout_s: 2.5
    ffmpeg_options: {fflags: nobuffer, buffer_size: 1048576}"""


def test_full_file(tmp_path):
    text = (
        MINIMAL.replace("    uri: videos/a.mp4", SOURCE_EXTRAS)
        + """
  format: yolox
  labels: [a, b]
  confidence: 0.4
  iou: 0.5
  classes: [a]
  max_detections: 50
  input_size: 416
  providers: [cpu]
  threads: 2
  batch: {max_size: 8, max_wait_ms: 5}
realtime: {max_latency_ms: 250}
queues:
  decoded: {size: 3, overflow: drop_newest}
events: {emit: [detections]}
sink:
  redis: {url: "redis://h:1/2", stream: "s:{pipeline}:{source}", maxlen: 10}
"""
    )
    config = load_config(write(tmp_path, text))
    source = config.sources[0]
    assert (source.max_fps, source.skip_frames, source.transport) == (5, "nonref", "udp")
    assert source.ffmpeg_options == {"fflags": "nobuffer", "buffer_size": 1048576}
    assert config.model.batch.max_size == 8
    assert config.queues.decoded.overflow is Overflow.DROP_NEWEST
    assert config.sink.redis.stream == "s:{pipeline}:{source}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("name: lobby", "name: lobby\ncolour: red"), r"p\.yaml: colour: unknown key"),
        (
            ("model:\n  path: models/m.onnx", "model:\n  path: m.onnx\n  confidence: 3"),
            r"model\.confidence: Input should be less than or equal to 1, got 3",
        ),
        (
            ("model:\n  path: models/m.onnx", "model:\n  path: m.onnx\n  confidence: high"),
            r"model\.confidence: Input should be a valid number.*, got 'high'",
        ),
        (
            ("    uri: videos/a.mp4", "    uri: videos/a.mp4\n    fps: 3"),
            r"sources\[0\]\.fps: unknown key",
        ),
        (("  - id: cam1", "  - id: 'bad id'"), r"sources\[0\]\.id: String should match pattern"),
        (("model:\n  path: models/m.onnx", "model: {}"), r"model\.path: required"),
        (("sources:", "sources: []\nx:"), r"sources: List should have at least 1 item"),
        (
            ("model:\n  path: models/m.onnx", "model:\n  path: m.onnx\n  format: ssd"),
            r"model\.format: Input should be 'auto', 'yolov8', 'yolo11' or 'yolox'",
        ),
        (
            ("name: lobby", "name: lobby\nevents: {emit: [zone_entred]}"),
            r"events\.emit: 'zone_entred' is not an event type \(available: object_appeared",
        ),
        (
            ("name: lobby", "name: lobby\nzones: [{name: door, polygon: [[0, 0], [9, 9]]}]"),
            r"zones\[0\]\.polygon: List should have at least 3 items",
        ),
        (
            ("name: lobby", "name: lobby\nlines: [{name: gate, points: [[5, 5], [5, 5]]}]"),
            r"lines\[0\]\.points: the two points of a line must differ",
        ),
        (
            (
                "name: lobby",
                "name: lobby\nlines: [{name: g, points: [[0, 0], [5, 5]], sources: [x]}]",
            ),
            r"line 'g': no source with id 'x'",
        ),
        (
            (
                "name: lobby",
                "name: lobby\nzones: [{name: d, polygon: [[0, 0], [9, 0], [9, 9]], sizee: 1}]",
            ),
            r"zones\[0\]\.sizee: unknown key",
        ),
        (
            ("name: lobby", "name: lobby\nsink: {redis: {stream: 'a:{camera}'}}"),
            r"sink\.redis\.stream: unknown placeholder \{camera\}",
        ),
        (
            ("    uri: videos/a.mp4", "    uri: videos/a.mp4\n    max_fps: 0"),
            r"sources\[0\]\.max_fps: Input should be greater than 0, got 0",
        ),
        (
            ("    uri: videos/a.mp4", "    uri: videos/a.mp4\n    transport: quic"),
            r"sources\[0\]\.transport: Input should be 'tcp' or 'udp'",
        ),
        (
            ("name: lobby", "name: lobby\nsink: {redis: {stream: 'a:{pipeline'}}"),
            r"sink\.redis\.stream: not a valid template",
        ),
        (
            ("name: lobby", "name: lobby\nqueues: {events: {overflow: drop_oldest}}"),
            r"queues\.events\.overflow: unknown key",
        ),
        (
            ("name: lobby", "name: lobby\nqueues: {decoded: {overflow: leak}}"),
            r"queues\.decoded\.overflow: Input should be 'block', 'drop_oldest' or 'drop_newest'",
        ),
        (
            ("    uri: videos/a.mp4", "    uri: videos/a.mp4\n  - {id: cam1, uri: b.mp4}"),
            r"source id 'cam1' is used twice",
        ),
    ],
)
def test_errors_name_the_file_and_field(tmp_path, change, message):
    old, new = change
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "name: [unclosed\nsources: x\n")
    with pytest.raises(ConfigError, match=r"p\.yaml:\d+:\d+: invalid YAML"):
        load_config(path)


def test_a_file_that_is_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping of keys, got list"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="pipeline file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("a.mp4", (None, "a.mp4")),
        ("cam2=a.mp4", ("cam2", "a.mp4")),
        ("cam2=rtsp://u:p@h/s?x=1", ("cam2", "rtsp://u:p@h/s?x=1")),
        ("rtsp://h/s?x=1", (None, "rtsp://h/s?x=1")),
    ],
)
def test_source_option(option, expected):
    assert parse_source_option(option) == expected


def test_overrides(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    one = with_overrides(config, sources=["other.mp4"], realtime=True)
    assert [(s.id, s.uri, s.realtime) for s in one.sources] == [
        ("cam1", str(Path.cwd() / "other.mp4"), True)
    ]
    two = with_overrides(config, sources=["cam1=rtsp://h/1", "cam2=rtsp://h/2"])
    assert [(s.id, s.uri) for s in two.sources] == [("cam1", "rtsp://h/1"), ("cam2", "rtsp://h/2")]
    model = with_overrides(config, model=Path("x.onnx"))
    assert model.model.path == Path("x.onnx").resolve()
    assert model.model.format == "auto"
    with pytest.raises(ConfigError, match="use ID=URI"):
        with_overrides(config, sources=["a.mp4", "b.mp4"])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{id: a, uri: '   '}", r"sources\[0\]\.uri: is blank"),
        ('{id: a, uri: "cam\\nera.mp4"}', r"sources\[0\]\.uri: contains a control character"),
        ("{id: a, uri: a.mp4, max_latency_ms: 1000000}", r"sources\[0\]\.max_latency_ms: "),
        ("{id: a, uri: a.mp4, ffmpeg_options: {probesize: .nan}}",
         r"sources\[0\]\.ffmpeg_options: option 'probesize' must be a finite number"),
        ("{id: a, uri: a.mp4, ffmpeg_options: {'': 1}}",
         r"sources\[0\]\.ffmpeg_options: option name '' is empty"),
    ],
)  # fmt: skip
def test_absurd_source_values_are_refused(source, message):
    text = f"name: t\nsources: [{source}]\nmodel: {{path: m.onnx}}\n"
    with pytest.raises(ConfigError, match=message):
        parse_config(yaml.safe_load(text), "t.yaml")


def test_variables_in_values_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CAM_PASSWORD", "p@ss:word")
    monkeypatch.setenv("REDIS_HOST", "redis.local")
    monkeypatch.delenv("CAM_HOST", raising=False)
    text = MINIMAL.replace(
        "uri: videos/a.mp4", "uri: rtsp://viewer:${CAM_PASSWORD}@${CAM_HOST:-10.0.0.7}/s"
    )
    text += (
        "sink:\n  redis:\n    url: redis://${REDIS_HOST}:6379/0\n    stream: 'cost$$:{source}'\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.sources[0].uri == "rtsp://viewer:p@ss:word@10.0.0.7/s"
    assert config.sink.redis.url == "redis://redis.local:6379/0"
    assert config.sink.redis.stream == "cost$:{source}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("rtsp://u:${CAM_UNSET_PASSWORD}@cam/s",
         "sources[0].uri: the environment variable CAM_UNSET_PASSWORD is not set"),
        ("rtsp://u:${CAM PASSWORD}@cam/s", "sources[0].uri: a variable is written ${NAME}"),
    ],
)  # fmt: skip
def test_an_unset_or_malformed_variable_names_the_file_and_field(tmp_path, monkeypatch, value,
                                                                 message):  # fmt: skip
    monkeypatch.delenv("CAM_UNSET_PASSWORD", raising=False)
    path = write(tmp_path, MINIMAL.replace("uri: videos/a.mp4", f"uri: '{value}'"))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        load_config(path)


@pytest.mark.parametrize(
    ("uri", "message"),
    [("rtspx://10.0.0.7/stream1", "rtspx:// is not a kind of URL streamer reads"),
     ("rtsp:///stream1", "has no host"),
     ("rtsp://10.0.0.7:99999/stream1", "has a port that is not a number"),
     ("http://user:pw@:80/live.m3u8", "has no host")],
)  # fmt: skip
def test_urls_that_cannot_work_are_refused_without_the_network(tmp_path, uri, message):
    path = write(tmp_path, MINIMAL.replace("uri: videos/a.mp4", f"uri: '{uri}'"))
    with pytest.raises(ConfigError, match=f"sources\\[0\\]\\.uri: .*{re.escape(message)}"):
        load_config(path)


def test_urls_of_every_kind_streamer_reads_are_kept(tmp_path):
    uris = ("rtsp://viewer:pw@10.0.0.7:554/s", "rtsps://cam.local/s", "srt://10.0.0.7:9000",
            "udp://@:1234", "https://cdn.example/live.m3u8", "file:///videos/a.mp4")  # fmt: skip
    for uri in uris:
        path = write(tmp_path, MINIMAL.replace("uri: videos/a.mp4", f"uri: '{uri}'"))
        assert load_config(path).sources[0].uri.endswith(uri.rsplit("/", 1)[-1])
