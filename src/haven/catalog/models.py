"""Catalog tables (SQLAlchemy 2). Schema changes go through Alembic migrations only.

Resources keep their full definition in ``spec`` (the ``haven.domain.codec`` form) plus
the key columns needed for references, uniqueness and queries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Times are stored in UTC and always read back time-zone aware (UTC).

    SQLite keeps no offset (it hands back naive datetimes) and PostgreSQL answers in the
    session's zone: both are normalised here, so no caller ever sees a naive time. A
    naive value written by older code is taken as the UTC it was meant to be."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class _Resource:
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    spec: Mapped[dict[str, Any]]
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SiteRow(_Resource, Base):
    __tablename__ = "sites"
    driver: Mapped[str] = mapped_column(String(32))


class RepositoryRow(_Resource, Base):
    __tablename__ = "repositories"
    url: Mapped[str] = mapped_column(Text)


class PolicyRow(_Resource, Base):
    __tablename__ = "policies"


class GroupRow(_Resource, Base):
    __tablename__ = "groups"
    source_site: Mapped[str] = mapped_column(ForeignKey("sites.name"))
    target_site: Mapped[str] = mapped_column(ForeignKey("sites.name"))
    policy: Mapped[str] = mapped_column(ForeignKey("policies.name"))
    state: Mapped[str] = mapped_column(String(32), default="unprotected")
    # the Keystone project owning the group (NULL: operator-owned); since 0005
    project: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class GroupMemberRow(Base):
    """One row per member; the unique key makes a server belong to one group only."""

    __tablename__ = "group_members"
    __table_args__ = (UniqueConstraint("site", "kind", "ref", name="uq_member_site_kind_ref"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_name: Mapped[str] = mapped_column(ForeignKey("groups.name", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(255))


class PlanRow(_Resource, Base):
    __tablename__ = "plans"
    group_name: Mapped[str] = mapped_column(ForeignKey("groups.name"))


class PointRow(Base):
    __tablename__ = "recovery_points"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_name: Mapped[str] = mapped_column(ForeignKey("groups.name"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    data: Mapped[dict[str, Any]]


class OperationRow(Base):
    __tablename__ = "operations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    group_name: Mapped[str] = mapped_column(String(63), index=True)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    params: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any]]
    error: Mapped[str] = mapped_column(Text, default="")
    error_type: Mapped[str] = mapped_column(String(128), default="")  # since 0003
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)  # since 0003


class StepRow(Base):
    __tablename__ = "operation_steps"
    __table_args__ = (UniqueConstraint("operation_id", "seq", name="uq_step_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operation_id: Mapped[str] = mapped_column(ForeignKey("operations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    detail: Mapped[str] = mapped_column(Text, default="")


class GroupLockRow(Base):
    """At most one operation per group: the primary key is the group."""

    __tablename__ = "group_locks"
    group_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    operation_id: Mapped[str] = mapped_column(String(40))
    acquired_at: Mapped[datetime]


class CreatedResourceRow(Base):
    """Something an operation created at a site (``kind``: a domain.project.LedgerKind).

    Recorded before the engine reports the step done, so that cleanup of a drill removes
    exactly what the drill created; ``removed_at`` is set once it is gone.
    """

    __tablename__ = "created_resources"
    __table_args__ = (
        UniqueConstraint("operation_id", "site", "kind", "ref", name="uq_created_resource"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operation_id: Mapped[str] = mapped_column(String(40), index=True)
    group_name: Mapped[str] = mapped_column(String(63))
    site: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]


class IdempotencyKeyRow(Base):
    """An ``Idempotency-Key`` of one project's operation submit (since 0005): a replay with
    the same request hash answers the same operation; the key is the primary key."""

    __tablename__ = "idempotency_keys"
    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    operation_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]


class GroupPlacementRow(Base):
    """Where a group runs now: the active (protected) site, the standby (recovery) site and
    the active site's server ids. Absent: the spec's source/target and the source's names."""

    __tablename__ = "group_placement"
    group_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    active_site: Mapped[str] = mapped_column(String(63))
    standby_site: Mapped[str] = mapped_column(String(63))
    servers: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class PointServersRow(Base):
    """The server definitions captured with a recovery point (codec form of ServerSpec)."""

    __tablename__ = "point_servers"
    point_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    data: Mapped[dict[str, Any]]


class PointProjectRow(Base):
    """The project infrastructure captured with a recovery point (codec form of
    ``haven.domain.project.ProjectSnapshot``); only sites with projects record one."""

    __tablename__ = "point_projects"
    point_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    data: Mapped[dict[str, Any]]


class GroupStateChangeRow(Base):
    """Every state a group entered, and when (since 0006): the history usage integrates
    protected GB-hours over. Groups older than 0006 were given a row at their first
    committed point (and one at migration time if they were then in another state)."""

    __tablename__ = "group_state_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_name: Mapped[str] = mapped_column(String(63), index=True)
    state: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[datetime]


class ProjectQuotaRow(Base):
    """A project's limits (since 0006); a null limit is unlimited, no row: all unlimited."""

    __tablename__ = "project_quotas"
    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    groups: Mapped[int | None] = mapped_column(Integer, nullable=True)
    protected_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    points: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime]
