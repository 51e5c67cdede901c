"""Writes docs/pipeline-reference.md from the pipeline schema's field docstrings.

    python -m tools.make_docs           # write it
    python -m tools.make_docs --check   # exit 1 when the file is not what the schema gives

The schema (`streamer/config/schema.py`) is the one place a key is documented: its type,
bounds and default come from the annotations, its meaning from the docstring under it.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
import typing
from pathlib import Path, PurePath
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from streamer.config.schema import PipelineConfig

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "pipeline-reference.md"

HEADER = """# Pipeline reference

Every key of a pipeline file, with its type, bounds, default and meaning. Generated from
the schema (`streamer/config/schema.py`) by `python -m tools.make_docs`; a test fails when
this file and the schema disagree. Unknown keys are errors; paths are relative to the
pipeline file. For how the keys work together, with examples, see
[pipelines.md](pipelines.md).
"""

_BOUNDS = (
    (annotated_types.Gt, "gt", "> {}"),
    (annotated_types.Ge, "ge", ">= {}"),
    (annotated_types.Lt, "lt", "< {}"),
    (annotated_types.Le, "le", "<= {}"),
    (annotated_types.MultipleOf, "multiple_of", "multiple of {}"),
    (annotated_types.MinLen, "min_length", "at least {} long"),
    (annotated_types.MaxLen, "max_length", "at most {} long"),
)


def _section(paths: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in paths) if paths[0] else "Top level"


def _anchor(path: str) -> str:
    """The GitHub anchor of a section heading made by `_section`."""
    return "".join(c for c in path.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _constraints(metadata: list[Any]) -> list[str]:
    out = []
    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[int, Field(gt=0)] inside a union
            out += _constraints(item.metadata)
            continue
        for kind, attribute, text in _BOUNDS:
            if isinstance(item, kind):
                out.append(text.format(getattr(item, attribute)))
        pattern = getattr(item, "pattern", None)
        if pattern:
            out.append(f"matching `{pattern}`")
    return out


def _type(annotation: Any, links: dict[type[BaseModel], str]) -> str:
    """A reader's name for a field's type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        inner = _type(args[0], links)
        bounds = _constraints(list(args[1:]))
        return f"{inner} ({', '.join(bounds)})" if bounds else inner
    if origin in (typing.Union, types.UnionType):
        members = [_type(a, links) for a in args if a is not type(None)]
        return " or ".join(members) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type(args[0], links)}"
    if origin is tuple:
        return "pair of " + _type(args[0], links) if len(args) == 2 else "tuple"
    if origin is dict:
        return f"mapping of {_type(args[0], links)} to {_type(args[1], links)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[mapping](#{links[annotation]})"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    names: dict[Any, str] = {
        str: "text", int: "integer", float: "number", bool: "true or false", Path: "path"
    }  # fmt: skip
    return names.get(annotation) or str(getattr(annotation, "__name__", annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None:
        return "unset" if value is None else "required"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, list):
        value = [v.value if isinstance(v, enum.Enum) else v for v in value]
    if isinstance(value, PurePath):
        value = str(value)
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _walk(model: type[BaseModel], path: str, out: dict[type[BaseModel], list[str]]) -> None:
    """Every model of the schema, with the key paths it sits at, in reading order."""
    if model in out:
        out[model].append(path)
        return
    out[model] = [path]
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        if typing.get_origin(field.annotation) is list or (
            typing.get_origin(field.annotation) is typing.Annotated
            and typing.get_origin(typing.get_args(field.annotation)[0]) is list
        ):
            key += "[]"
        for nested in _models_in(field.annotation):
            _walk(nested, key, out)


def reference() -> str:
    sections: dict[type[BaseModel], list[str]] = {}
    _walk(PipelineConfig, "", sections)
    links = {model: _anchor(_section(paths)) for model, paths in sections.items()}
    parts = [HEADER]
    for model, paths in sections.items():
        parts.append(f"\n## {_section(paths)}\n")
        doc = (model.__doc__ or "").strip()
        if doc and model.__doc__ != BaseModel.__doc__:
            parts.append("\n" + " ".join(doc.split()) + "\n")
        parts.append("\n| key | type | default | meaning |\n|---|---|---|---|\n")
        for name, field in model.model_fields.items():
            annotation: Any = field.annotation
            if field.metadata:
                annotation = typing.Annotated[(annotation, *field.metadata)]
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            row = (
                f"`{name}`",
                str(extra.get("reference_type") or _type(annotation, links)),
                _default(field),
                _cell(field.description or ""),
            )
            parts.append("| " + " | ".join(_cell(c) for c in row) + " |\n")
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only check that it is current.")
    args = parser.parse_args()
    text = reference()
    if args.check:
        current = REFERENCE.read_text() if REFERENCE.exists() else ""
        if current != text:
            sys.exit(f"{REFERENCE} is stale: run python -m tools.make_docs")
        return
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(text)
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    main()
