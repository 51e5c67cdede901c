"""`${VAR}` in a pipeline file's values: secrets and per-site settings from the environment,
so that camera and Redis passwords stay out of files and out of `ps`.

`${NAME}` is the variable's value (an error naming the field when it is not set),
`${NAME:-default}` the default when it is unset or empty, and `$$` a literal `$`. Only
string values are read, after YAML parsing: a value cannot add keys or change the
file's structure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streamer.errors import ConfigError

_REFERENCE = re.compile(
    r"\$(?:\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<dollar>\$)|(?P<bad>\{))"
)


def _where(path: tuple[int | str, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def substitute_text(text: str, environ: Mapping[str, str], where: str) -> str:
    """`text` with its references replaced; ConfigError naming `where` for an unset
    variable or a malformed reference."""

    def replace(match: re.Match[str]) -> str:
        if match["dollar"] is not None:
            return "$"
        if match["bad"] is not None:
            raise ConfigError(
                f"{where}: a variable is written ${{NAME}} or ${{NAME:-default}} "
                "(and a literal $ as $$)"
            )
        value = environ.get(match["name"])
        if value:
            return value
        if match["default"] is not None:
            return match["default"]
        raise ConfigError(f"{where}: the environment variable {match['name']} is not set")

    return _REFERENCE.sub(replace, text)


def substitute(data: Any, environ: Mapping[str, str], path: tuple[int | str, ...] = ()) -> Any:
    """Parsed YAML with `${VAR}` replaced in every string value (keys are left alone)."""
    if isinstance(data, str):
        return substitute_text(data, environ, _where(path)) if "$" in data else data
    if isinstance(data, dict):
        return {key: substitute(value, environ, (*path, str(key))) for key, value in data.items()}
    if isinstance(data, list):
        return [substitute(value, environ, (*path, i)) for i, value in enumerate(data)]
    return data
