"""State machines with explicit transition tables.

Every stateful concept (group protection, recovery point, operation, step) is an Enum
plus a table of allowed transitions. ``transition`` is the only way to move: an edge
not in the table raises :class:`IllegalTransition` and the caller's state is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Generic, TypeVar

from haven.domain.errors import IllegalTransition

S = TypeVar("S", bound=Enum)


class StateMachine(Generic[S]):
    """A named transition table over one Enum."""

    def __init__(self, name: str, initial: S, table: Mapping[S, frozenset[S]]) -> None:
        self.name = name
        self.initial = initial
        self.table = dict(table)
        missing = [s for s in type(initial) if s not in self.table]
        if missing:
            raise ValueError(f"{name}: states without a table entry: {missing}")

    def allowed(self, current: S) -> frozenset[S]:
        return self.table[current]

    def can(self, current: S, target: S) -> bool:
        return target in self.table[current]

    def is_terminal(self, state: S) -> bool:
        return not self.table[state]

    def transition(self, current: S, target: S) -> S:
        """Return ``target`` if ``current -> target`` is allowed, else raise."""
        if target not in self.table[current]:
            raise IllegalTransition(
                self.name,
                str(current.value),
                str(target.value),
                frozenset(str(s.value) for s in self.table[current]),
            )
        return target
