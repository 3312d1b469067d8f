"""Repository repair: rebuild what can be rebuilt, quarantine what is bad, say what was saved.

Work in progress in this session: the report types are the contract callers (the CLI, the
engine) build on; :func:`repair` follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Salvage(StrEnum):
    """What a recovery point (one volume manifest) is worth after repair."""

    INTACT = "intact"  # every chunk readable: fully restorable
    PARTIAL = "partial"  # some chunks lost: restorable only with holes
    LOST = "lost"  # manifest unreadable or missing: nothing restorable


@dataclass(frozen=True, slots=True)
class PointSalvage:
    manifest_id: str
    volume: str
    point_id: str
    salvage: Salvage
    chunks_total: int
    chunks_lost: int
    objects: tuple[str, ...] = ()  # the damaged objects it needed


@dataclass(slots=True)
class RepairReport:
    dry_run: bool
    actions: list[str] = field(default_factory=list)  # what was (or would be) done
    unsaved: list[str] = field(default_factory=list)  # damage repair could not undo
    quarantined: list[str] = field(default_factory=list)  # object keys moved aside
    points: list[PointSalvage] = field(default_factory=list)

    def count(self, salvage: Salvage) -> int:
        return sum(1 for p in self.points if p.salvage is salvage)
