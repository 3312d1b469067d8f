"""Byte ranges of a volume: the currency of changed-block tracking.

A site driver that tracks changed blocks reports the extents written since the
previous point; the data mover reads only those and takes everything else from the
parent manifest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class Extent:
    """``length`` bytes starting at byte ``offset``. Both non-negative; length > 0."""

    offset: int
    length: int

    def __post_init__(self) -> None:
        if self.offset < 0 or self.length <= 0:
            raise ValueError(f"invalid extent offset={self.offset} length={self.length}")

    @property
    def end(self) -> int:
        return self.offset + self.length


def merge_extents(extents: Iterable[Extent]) -> list[Extent]:
    """Sort and coalesce overlapping or touching extents."""
    out: list[Extent] = []
    for ext in sorted(extents):
        if out and ext.offset <= out[-1].end:
            last = out[-1]
            out[-1] = Extent(last.offset, max(last.end, ext.end) - last.offset)
        else:
            out.append(ext)
    return out
