"""Reading and writing resource definitions (sites ... plans) in the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from haven.catalog.decode import decoded
from haven.catalog.models import (
    GroupMemberRow,
    GroupRow,
    PlanRow,
    PolicyRow,
    RepositoryRow,
    SiteRow,
)
from haven.domain.codec import from_data, to_data
from haven.domain.groups import ProtectionGroup
from haven.domain.plans import RecoveryPlan
from haven.domain.resources import KIND_TYPES, Resource, ResourceKind, Resources
from haven.domain.sites import Repository, Site

ROW_TYPES: dict[ResourceKind, type[Any]] = {
    ResourceKind.SITE: SiteRow,
    ResourceKind.REPOSITORY: RepositoryRow,
    ResourceKind.POLICY: PolicyRow,
    ResourceKind.GROUP: GroupRow,
    ResourceKind.PLAN: PlanRow,
}


def load_all(session: Session) -> Resources:
    parts: dict[str, tuple[Any, ...]] = {}
    for kind in ResourceKind:
        rows = session.scalars(select(ROW_TYPES[kind]).order_by(ROW_TYPES[kind].name)).all()
        parts[kind.plural] = tuple(
            decoded(f"{kind.value} {row.name!r}", from_data, KIND_TYPES[kind], row.spec)
            for row in rows
        )
    return Resources(**parts)


def upsert(session: Session, kind: ResourceKind, resource: Resource) -> None:
    """Create or replace one resource; bumps its generation when it changes."""
    row_type = ROW_TYPES[kind]
    now = datetime.now(UTC)
    data = to_data(resource)
    row = session.get(row_type, resource.name)
    if row is None:
        row = row_type(name=resource.name, spec=data, generation=1, created_at=now, updated_at=now)
        session.add(row)
    elif row.spec != data:
        row.spec = data
        row.generation += 1
        row.updated_at = now
    _key_columns(row, resource)
    if isinstance(resource, ProtectionGroup):
        session.flush()
        _replace_members(session, resource)


def _key_columns(row: Any, resource: Resource) -> None:
    if isinstance(resource, Site):
        row.driver = resource.driver.value
    elif isinstance(resource, Repository):
        row.url = resource.url
    elif isinstance(resource, ProtectionGroup):
        row.source_site = resource.source_site
        row.target_site = resource.target_site
        row.policy = resource.policy
        row.project = resource.project
        if row.state is None:
            row.state = "unprotected"
    elif isinstance(resource, RecoveryPlan):
        row.group_name = resource.group


def _replace_members(session: Session, group: ProtectionGroup) -> None:
    session.execute(delete(GroupMemberRow).where(GroupMemberRow.group_name == group.name))
    session.flush()
    for position, member in enumerate(group.members):
        session.add(
            GroupMemberRow(
                group_name=group.name,
                position=position,
                site=group.source_site,
                kind=member.kind.value,
                ref=member.ref,
            )
        )


def generations(session: Session, kind: ResourceKind, names: Sequence[str]) -> dict[str, int]:
    row_type = ROW_TYPES[kind]
    rows = session.execute(
        select(row_type.name, row_type.generation).where(row_type.name.in_(names))
    ).all()
    return {name: gen for name, gen in rows}
