"""Reading a pipeline file: YAML to a validated `PipelineConfig`, paths made absolute.

`load_config(path)` reads the YAML, validates it and resolves relative paths against the
file's folder. Every error is a `ConfigError` whose message names the file and the field
(`pipelines/x.yaml: model.confidence: ...`), on one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from streamer.config.schema import MAX_VALUES, PipelineConfig, SinkConfig
from streamer.config.variables import substitute
from streamer.errors import ConfigError

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHOWN_CHARS = 60  # of a wrong value or key, in an error message


def _shown(value: object) -> str:
    """`repr(value)`, which keeps it on one line, cut to a length that fits one."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:  # a key the user mistyped may hold anything, a line break included
            out += f"[{_shown(part)}]"
    return out


def one_line(error: ErrorDetails) -> str:
    where = _location(tuple(error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if error["type"] == "missing":
        return f"{where}: required"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = "" if isinstance(value, (dict, list)) or value is None else f", got {_shown(value)}"
    return f"{where}: {message}{shown}" if where else f"{message}{shown}"


def _more_values_than(data: Any, limit: int) -> bool:
    """Whether `data` holds more than `limit` values, counting a shared (aliased) one each
    time it is used, as validation would see it; a cycle counts as too many."""
    pending = [data]
    count = 0
    while pending:
        item = pending.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            pending.extend(item)
    return False


def parse_config(data: Any, origin: str) -> PipelineConfig:
    """Validate already-parsed YAML, `${NAME}` in its values replaced from the environment;
    `origin` names the file in errors."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: a pipeline file must be a mapping of keys, got {type(data).__name__}"
        )
    if _more_values_than(data, MAX_VALUES):
        raise ConfigError(
            f"{origin}: more than {MAX_VALUES} values (a YAML alias counts each time it is "
            "used): not a pipeline file"
        )
    try:
        data = substitute(data, os.environ)  # bounded: the values were counted above
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{origin}: {one_line(errors[0])}{more}") from None


def resolve_path(path_text: str, base: Path, where: str) -> str:
    """`path_text` made absolute from `base`; ConfigError naming `where` when it cannot be
    (`~nobody/x` for a user who does not exist, a NUL character)."""
    try:
        path = Path(path_text.removeprefix("file://")).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())
    except (OSError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"{where}: not a usable path {_shown(path_text)} ({exc})") from None


class _PipelineLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: plain YAML keeps the
    last one without a word, so a pasted second `model:` would silently win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` is meant to be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:
                continue  # unhashable: the base constructor reports it
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {_shown(key)} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path) -> PipelineConfig:
    """Read and validate a pipeline file; relative paths are taken from its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: pipeline file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    try:
        data = yaml.load(text, Loader=_PipelineLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as exc:  # an integer of over 4300 digits, a date like 2024-13-45
        # Python's own advice after the ';' (sys.set_int_max_str_digits) is not for users.
        problem = str(exc).partition(";")[0]
        raise ConfigError(f"{path}: invalid YAML: a value cannot be read ({problem})") from None
    config = parse_config(data, str(path))
    base = path.resolve().parent
    sources = [
        s.model_copy(update={"uri": resolve_path(s.uri, base, f"{path}: sources[{i}].uri")})
        if s.is_file
        else s
        for i, s in enumerate(config.sources)
    ]
    model_path = resolve_path(str(config.model.path), base, f"{path}: model.path")
    model_update: dict[str, Any] = {"path": Path(model_path)}
    if config.model.engine_cache is not None:
        cache = resolve_path(str(config.model.engine_cache), base, f"{path}: model.engine_cache")
        model_update["engine_cache"] = Path(cache)
    model = config.model.model_copy(update=model_update)
    update: dict[str, Any] = {"sources": sources, "model": model}
    snapshots = config.events.snapshot_settings
    if snapshots is not None:
        folder = resolve_path(str(snapshots.folder), base, f"{path}: events.snapshots.folder")
        snapshots = snapshots.model_copy(update={"folder": Path(folder)})
        update["events"] = config.events.model_copy(update={"snapshots": snapshots})
    if config.health is not None and config.health.profile is not None:
        profile = resolve_path(str(config.health.profile), base, f"{path}: health.profile")
        update["health"] = config.health.model_copy(update={"profile": Path(profile)})
    redis_sink = config.redis
    if redis_sink is not None and redis_sink.spool_path is not None:
        where = f"{path}: sink.redis.spool_path"
        spool_path = resolve_path(str(redis_sink.spool_path), base, where)
        redis_sink = redis_sink.model_copy(update={"spool_path": Path(spool_path)})
        update["sink"] = SinkConfig(redis=redis_sink)
    return config.model_copy(update=update)


@contextmanager
def naming_file(path: Path) -> Iterator[None]:
    """ConfigErrors raised inside name the pipeline file `path` first (those of the schema
    and the loader name it already)."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
