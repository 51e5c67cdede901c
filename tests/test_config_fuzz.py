"""The pipeline loader against anything a file can hold: generated YAML documents, mutations of
a valid pipeline, and absurd values. A file gives a valid config or one `ConfigError` line that
names the file; never another exception, a hang, or a config holding nan or inf."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.config import PipelineConfig, load_config, parse_config, with_overrides
from streamer.config.schema import MAX_VALUES
from streamer.errors import ConfigError
from tests.conftest import run_cli

# Deterministic (the same examples every run, no example database) and bounded: the fuzz
# tests together take a few seconds.
BOUNDED = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz(examples: int) -> settings:
    return settings(BOUNDED, max_examples=examples)


VALID: dict[str, Any] = {
    "name": "lobby",
    "sources": [
        {"id": "cam1", "uri": "videos/a.mp4", "max_fps": 5, "realtime": True},
        {"id": "door", "uri": "rtsp://u:p@10.0.0.7/s", "transport": "udp"},
    ],
    "model": {
        "path": "m.onnx",
        "format": "yolox",
        "labels": ["person", "car"],
        "confidence": 0.4,
        "classes": ["person"],
        "input_size": 416,
        "providers": ["cpu"],
        "batch": {"max_size": 8, "max_wait_ms": 5},
    },
    "realtime": {"max_latency_ms": 300},
    "queues": {"decoded": {"size": 4, "overflow": "drop_oldest"}, "events": {"size": 100}},
    "events": {"emit": ["detections", "line_crossed"]},
    "tracking": {"low_confidence": 0.1, "confirm_hits": 3, "lost_after_s": 1.0},
    "zones": [{"name": "door", "polygon": [[0, 0], [200, 0], [200, 300]], "labels": ["person"]}],
    "lines": [{"name": "gate", "points": [[0, 400], [768, 400]], "sources": ["cam1"]}],
    "sink": {"redis": {"stream": "s:{source}", "maxlen": 1000}},
}

ODD_TEXT = [
    "", " ", "\n", "a\nb", "\x00", "\t", "~nobody-here/x.mp4", "file://", "日本語", "🎥",
    "\u202e", "\u2028", "\ufeff", "{pipeline", "{", "a" * 200, "-1", "1e308", ".nan", "null",
]  # fmt: skip
ABSURD_NUMBERS = [
    0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**9, 10**400, 1e308, -1e308, 5e-324,
    math.nan, math.inf, -math.inf, 0.5, 1.0000001,
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(ABSURD_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(ODD_TEXT),
)
keys = st.one_of(
    st.sampled_from(["name", "sources", "model", "id", "uri", "path", "zones", "polygon"]),
    st.text(max_size=8),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
)


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=20,
)
odd_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(keys, scalars, max_size=3),
    st.builds(nested, st.integers(1, 40)),
    # Longer than any list the schema allows, and than a file should hold.
    st.sampled_from([[0] * 300, ["x"] * 20_000, [[0, 0]] * 2000]),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a document: the keys and indices that lead to it."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


VALID_PATHS = list(paths(VALID))


def mutate(document: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> Any:
    """A copy of `document` with the value at `path` replaced, removed, given an unknown key,
    wrapped in a list, or with `value` as a new item."""
    if not path:
        return value if action == "replace" else [document]
    result = copy.deepcopy(document)
    parent = result
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif action == "unknown_key" and isinstance(parent[last], dict):
        parent[last]["colour"] = value
    elif action == "wrap":
        parent[last] = [parent[last]]
    elif isinstance(parent[last], list):
        parent[last].append(value)
    else:
        parent[last] = {"nested": parent[last]}
    return result


mutations = st.builds(
    mutate,
    st.just(VALID),
    st.sampled_from(VALID_PATHS),
    st.sampled_from(["replace", "replace", "replace", "delete", "unknown_key", "wrap", "append"]),
    odd_values,
)


def finite_everywhere(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_everywhere(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(finite_everywhere(v) for v in value)
    return True


def check_outcome(load: Callable[[], PipelineConfig], origin: str) -> None:
    """The only outcomes allowed: a sound config, or one line that names the file."""
    try:
        config = load()
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{origin}:"), message
        assert len(message.splitlines()) == 1, message
        assert len(message) < 400, message
        return
    assert finite_everywhere(config.model_dump()), config


@fuzz(200)
@given(documents)
def test_any_document(document):
    check_outcome(lambda: parse_config(document, "fuzz.yaml"), "fuzz.yaml")


@fuzz(200)
@given(mutations)
def test_a_valid_pipeline_with_one_thing_wrong(document):
    check_outcome(lambda: parse_config(document, "fuzz.yaml"), "fuzz.yaml")


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "pipeline.yaml"


def dump(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


@fuzz(60)
@given(mutations)
def test_the_same_through_a_file(fuzz_file, document):
    fuzz_file.write_text(dump(document), encoding="utf-8")
    check_outcome(lambda: load_config(fuzz_file), str(fuzz_file))


YAML_NOISE = [*":[]{}-&*!|>'\"#%@`,?\t\n \\", "\x00", "\x85", "é", "<<", "*a", "&a"]


def scramble(text: str, seed: int, edits: int) -> str:
    """`text` with `edits` characters of YAML syntax inserted, removed or replaced."""
    rng = random.Random(seed)
    chars = list(text)
    for _ in range(edits):
        at = rng.randrange(len(chars))
        kind = rng.randrange(3)
        if kind == 0:
            chars.insert(at, rng.choice(YAML_NOISE))
        elif kind == 1 and len(chars) > 1:
            del chars[at]
        else:
            chars[at] = rng.choice(YAML_NOISE)
    return "".join(chars)


@fuzz(200)
@given(st.integers(0, 2**32), st.integers(1, 6))
def test_a_valid_file_with_its_syntax_scrambled(fuzz_file, seed, edits):
    fuzz_file.write_text(scramble(dump(VALID), seed, edits), encoding="utf-8")
    check_outcome(lambda: load_config(fuzz_file), str(fuzz_file))


@fuzz(30)
@given(st.binary(max_size=300))
def test_bytes_that_are_not_text(fuzz_file, data):
    fuzz_file.write_bytes(data)
    check_outcome(lambda: load_config(fuzz_file), str(fuzz_file))


def test_the_valid_pipeline_is_valid():
    config = parse_config(VALID, "fuzz.yaml")
    assert config.zones[0].polygon[2] == (200.0, 300.0)


def with_change(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    return mutate(VALID, path, "replace", value)


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("model", "batch", "max_size"), 0, "model.batch.max_size: Input should be greater"),
        (("model", "batch", "max_size"), 10**9, "model.batch.max_size: Input should be less"),
        (("model", "batch", "max_wait_ms"), NAN, "model.batch.max_wait_ms: "),
        (("model", "batch", "max_wait_ms"), -1, "model.batch.max_wait_ms: Input should be greater"),
        (("realtime", "max_latency_ms"), 0, "realtime.max_latency_ms: Input should be greater"),
        (("realtime", "max_latency_ms"), -5, "realtime.max_latency_ms: Input should be greater"),
        (("realtime", "max_latency_ms"), 1e308, "realtime.max_latency_ms: "),
        (("model", "confidence"), 1.5, "model.confidence: Input should be less than or equal to 1"),
        (("model", "confidence"), NAN, "model.confidence: "),
        (("model", "iou"), -0.1, "model.iou: Input should be greater than or equal to 0"),
        (("model", "max_detections"), 0, "model.max_detections: "),
        (("model", "threads"), 10**6, "model.threads: "),
        (("model", "input_size"), 100, "model.input_size: Input should be a multiple of 32"),
        (("model", "path"), "", "model.path: empty: name the ONNX file"),
        (("model", "path"), "m\x00.onnx", "model.path: contains a NUL character"),
        (("model", "labels"), [], "model.labels: List should have at least 1 item"),
        (("model", "labels"), ["a", "b", "a"], "model.labels: label 'a' is given twice"),
        (("model", "labels"), ["a", " "], "model.labels: a label is empty"),
        (("model", "classes"), [], "model.classes: List should have at least 1 item"),
        (("queues", "decoded", "size"), 0, "queues.decoded.size: Input should be greater"),
        (
            ("queues", "decoded", "size"),
            10**6,
            "queues.decoded.size: Input should be less than or equal to 1024",
        ),
        (("queues", "inferred"), {"size": 5000}, "queues.inferred.size: Input should be less"),
        (
            ("queues", "events", "size"),
            10**7,
            "queues.events.size: Input should be less than or equal to 100000",
        ),
        (("tracking", "confirm_hits"), 0, "tracking.confirm_hits: "),
        (("tracking", "lost_after_s"), INF, "tracking.lost_after_s: "),
        (("tracking", "match_iou"), NAN, "tracking.match_iou: "),
        (
            ("zones", 0, "polygon", 1, 0),
            NAN,
            "zones[0].polygon[1][0]: Input should be a finite number, got nan",
        ),
        (
            ("zones", 0, "polygon", 2, 1),
            INF,
            "zones[0].polygon[2][1]: Input should be a finite number, got inf",
        ),
        (
            ("zones", 0, "polygon", 2, 1),
            1e308,
            "zones[0].polygon[2][1]: Input should be less than or equal to 100000",
        ),
        (
            ("zones", 0, "polygon"),
            [[0, 0], [5, 5], [10, 10]],
            "zones[0].polygon: the polygon has no area",
        ),
        (
            ("zones", 0, "polygon"),
            [[0, 0]] * 5000,
            "zones[0].polygon: List should have at most 1000 items",
        ),
        (("zones", 0, "labels"), [], "zones[0].labels: List should have at least 1 item"),
        (("zones", 0, "hysteresis"), -1, "zones[0].hysteresis: "),
        (
            ("lines", 0, "points", 0),
            [NAN, 0],
            "lines[0].points[0][0]: Input should be a finite number",
        ),
        (("lines", 0, "points"), [[1, 1]], "lines[0].points[1]: required"),
        (("lines", 0, "sources"), [], "lines[0].sources: List should have at least 1 item"),
        (("events", "emit"), ["everything"], "events.emit: 'everything' is not an event type"),
        (("name",), "", "name: String should match pattern"),
        (("sources", 0, "id"), "", "sources[0].id: String should match pattern"),
        (
            ("sources",),
            [{"id": f"c{i}", "uri": "a.mp4"} for i in range(1001)],
            "sources: List should have at most 1000 items",
        ),
        (
            ("zones",),
            [{"name": "z", "polygon": [[0, 0], [1, 0], [0, 1]]}] * 1001,
            "zones: List should have at most 1000 items",
        ),
    ],
)
def test_absurd_values_are_refused_naming_the_field(path, value, message):
    with pytest.raises(ConfigError) as info:
        parse_config(with_change(path, value), "p.yaml")
    assert str(info.value).startswith(f"p.yaml: {message}"), str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_a_mistyped_key_is_shown_on_one_line():
    document = {**VALID, "na\nme": "x"}
    with pytest.raises(ConfigError, match=r"^p\.yaml: \['na\\nme'\]: unknown key$"):
        parse_config(document, "p.yaml")


def test_a_long_wrong_value_is_shortened():
    with pytest.raises(ConfigError) as info:
        parse_config(with_change(("name",), "x" * 100_000), "p.yaml")
    assert str(info.value).endswith(
        "got 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = "name: t\nsources: [{id: a, uri: a.mp4}]\nmodel: {path: m.onnx}\n"


def alias_bomb(levels: int) -> str:
    """YAML whose aliases expand to 10**levels values: a few hundred bytes."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "defs:\n" + "".join(f"  {line}\n" for line in lines)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL + "x: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML: nested too deeply"),
        (
            MINIMAL + "x: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
            "invalid YAML: nested too deeply",
        ),
        (MINIMAL + alias_bomb(9), f"more than {MAX_VALUES} values"),
        (MINIMAL + "x: &r [*r]\n", f"more than {MAX_VALUES} values"),
        (MINIMAL + "name: u\n", ":4:1: invalid YAML: key 'name' is given twice"),
        (
            MINIMAL + "realtime: {max_latency_ms: " + "9" * 5000 + "}\n",
            "a value cannot be read (Exceeds the limit (4300 digits)",
        ),
        (
            MINIMAL.replace("m.onnx", "~nobody-here/m.onnx"),
            "model.path: not a usable path '~nobody-here/m.onnx'",
        ),
        (MINIMAL.replace("a.mp4", '"a\\0.mp4"'), "sources[0].uri: contains a control character"),
        (
            MINIMAL.replace("name: t", "name: 2024-13-45"),
            "a value cannot be read (month must be in 1..12)",
        ),
        (
            MINIMAL.replace("name: t", "name: !!python/object:os.system x"),
            "could not determine a constructor",
        ),
    ],
)
def test_hostile_files(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}"), str(info.value)
    assert message in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_a_merge_key_may_be_overridden(tmp_path):
    text = MINIMAL.replace(
        "sources: [{id: a, uri: a.mp4}]",
        "sources:\n  - &cam {id: a, uri: a.mp4, max_fps: 5}\n  - {<<: *cam, id: b}",
    )
    config = load_config(write(tmp_path, text))
    assert [(s.id, s.max_fps) for s in config.sources] == [("a", 5), ("b", 5)]


def test_command_line_paths_that_cannot_be_used(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match=r"^--source ~nobody-here/a\.mp4: not a usable path"):
        with_overrides(config, sources=["~nobody-here/a.mp4"])
    with pytest.raises(ConfigError, match=r"^--model ~nobody-here/m\.onnx: not a usable path"):
        with_overrides(config, model=Path("~nobody-here/m.onnx"))


@pytest.mark.integration
@fuzz(1)
@given(st.lists(mutations, min_size=6, max_size=6))
def test_generated_bad_files_through_streamer_validate(tmp_path_factory, documents):
    folder = tmp_path_factory.mktemp("validate")
    files = []
    for i, document in enumerate([*documents, "{", [1, 2], None]):
        path = folder / f"bad{i}.yaml"
        path.write_text(document if isinstance(document, str) else dump(document))
        files.append(path)
    result = run_cli("validate", *map(str, files), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("streamer: error:")]
    assert len(errors) == len(files), result.stderr
    for path, line in zip(files, errors, strict=True):
        # A mutation may leave a valid file: it fails at its model, which is not there.
        named = (f"streamer: error: {path}", f"streamer: error: {folder / 'm.onnx'}")
        assert line.startswith(named), (line, path)
