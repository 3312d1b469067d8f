"""Reading a group's recovery points for interfaces (the CLI, later the API)."""

from __future__ import annotations

from haven.domain.points import RecoveryPoint
from haven.domain.resources import ResourceKind
from haven.engine import services


def list_points(group: str) -> list[RecoveryPoint]:
    """Every point of ``group``, oldest first, in every state (damaged ones carry their
    damage). An unknown group is a NotFoundError naming the known ones (exit 3)."""
    cat = services.catalog()
    cat.get(ResourceKind.GROUP, group)
    return cat.points(group)
