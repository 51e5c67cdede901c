"""`streamer run`'s flags (and `Pipeline.from_file`'s keyword arguments) applied to a
pipeline: --source, --model and --realtime/--no-realtime."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streamer.config.loader import one_line, resolve_path
from streamer.config.schema import ID_PATTERN, URI_SCHEME, PipelineConfig, SourceConfig
from streamer.errors import ConfigError


def parse_source_option(value: str) -> tuple[str | None, str]:
    """`--source URI` or `--source ID=URI` -> (id or None, uri)."""
    head, sep, tail = value.partition("=")
    if sep and re.match(ID_PATTERN, head) and not URI_SCHEME.match(value):
        return head, tail
    return None, value


def with_overrides(
    config: PipelineConfig,
    *,
    sources: Sequence[str] = (),
    model: Path | None = None,
    realtime: bool | None = None,
) -> PipelineConfig:
    """Apply `streamer run`'s --source, --model and --realtime/--no-realtime."""
    new_sources = list(config.sources)
    for option in sources:
        source_id, uri = parse_source_option(option)
        if source_id is None:
            if len(sources) > 1:
                raise ConfigError(f"--source {option}: with several --source options, use ID=URI")
            source_id = new_sources[0].id  # the one source keeps the pipeline's first id
            new_sources = []
        if not uri:
            raise ConfigError(f"--source {option}: empty URI")
        try:
            entry = SourceConfig(id=source_id, uri=uri)
        except ValidationError as exc:
            raise ConfigError(f"--source {option}: {one_line(exc.errors()[0])}") from None
        if entry.is_file:
            entry = entry.model_copy(
                update={"uri": resolve_path(uri, Path.cwd(), f"--source {option}")}
            )
        index = next((i for i, s in enumerate(new_sources) if s.id == source_id), None)
        if index is None:
            new_sources.append(entry)
        else:
            new_sources[index] = new_sources[index].model_copy(update={"uri": entry.uri})
    if realtime is not None:
        new_sources = [s.model_copy(update={"realtime": realtime}) for s in new_sources]
    update: dict[str, Any] = {"sources": new_sources}
    if model is not None:
        # A different file: its family and labels are read from it, not from the pipeline.
        path = Path(resolve_path(str(model), Path.cwd(), f"--model {model}"))
        update["model"] = config.model.model_copy(
            update={"path": path, "format": "auto", "labels": None}
        )
    return config.model_copy(update=update)
