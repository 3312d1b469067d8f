"""Tenancy: which groups (and so plans, points, operations) a caller may see.

A :class:`Scope` is one Keystone project, or every project (an admin, or the operator's
CLI). Every read and action the engine API offers takes one. An object outside the scope
answers exactly as an object that does not exist — NotFoundError with the same message,
never "forbidden" and never a list of the names that do exist — so that a tenant learns
nothing about other projects by probing names.

Plans, points and operations belong to their group's project; a group without a project
is operator-owned and visible only in the all-projects scope.
"""

from __future__ import annotations

from dataclasses import dataclass

from haven.domain.errors import NotFoundError
from haven.domain.groups import ProtectionGroup
from haven.domain.operations import Operation
from haven.domain.plans import RecoveryPlan
from haven.domain.points import RecoveryPoint
from haven.domain.resources import ResourceKind
from haven.engine import services


@dataclass(frozen=True, slots=True)
class Scope:
    project: str | None  # the caller's Keystone project id (None: the operator)
    all_projects: bool = False

    @classmethod
    def of(cls, project: str) -> Scope:
        return cls(project, False)

    def sees(self, owner: str | None) -> bool:
        return self.all_projects or (owner is not None and owner == self.project)


OPERATOR = Scope(None, all_projects=True)  # the CLI: the operator on the Haven host


def visible_groups(scope: Scope) -> list[str] | None:
    """The names of the groups in scope; None: every group (no filter)."""
    if scope.all_projects:
        return None
    assert scope.project is not None  # Scope.of
    return services.catalog().group_names(scope.project)


def group(scope: Scope, name: str) -> ProtectionGroup:
    if not scope.all_projects:
        try:
            owner = services.catalog().group_project(name)
        except NotFoundError:
            owner = None
        if not scope.sees(owner):
            raise NotFoundError(f"no group named {name!r}")
    g = services.catalog().get(ResourceKind.GROUP, name)
    assert isinstance(g, ProtectionGroup)
    return g


def plan(scope: Scope, name: str) -> RecoveryPlan:
    try:
        p = services.catalog().get(ResourceKind.PLAN, name)
        assert isinstance(p, RecoveryPlan)
        group(scope, p.group)
    except NotFoundError:
        if scope.all_projects:
            raise
        raise NotFoundError(f"no plan named {name!r}") from None
    return p


def _of_visible_group(scope: Scope, group_name: str, missing: str) -> None:
    """An object of ``group_name`` outside ``scope`` is ``missing`` (NotFoundError), in
    the words of a missing one."""
    if not scope.all_projects:
        try:
            group(scope, group_name)
        except NotFoundError:
            raise NotFoundError(missing) from None


def operation(scope: Scope, op_id: str) -> Operation:
    op = services.catalog().operation(op_id)
    _of_visible_group(scope, op.group, f"no operation {op_id!r}")
    return op


def point(scope: Scope, point_id: str) -> RecoveryPoint:
    p = services.catalog().point(point_id)
    _of_visible_group(scope, p.group, f"no recovery point {point_id!r}")
    return p
