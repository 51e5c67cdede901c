"""The base of streamer's enums: closed sets of names that are also their strings.

Python 3.11 has `enum.StrEnum`; streamer supports 3.10, so it keeps this one.

>>> class Colour(StrEnum):
...     RED = "red"
>>> Colour.RED == "red", str(Colour.RED), f"{Colour.RED}"
(True, 'red', 'red')
"""

from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """An enum whose members equal, print and format as their string values."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
