"""The catalog: Haven's persistent state behind one small API.

Every method runs in its own transaction unless it is given a session; ``transaction``
lets callers (e.g. apply) group several writes so that either all land or none.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from haven.catalog import resources as res_rows
from haven.catalog import submissions
from haven.catalog.db import open_engine, redact_url
from haven.catalog.decode import decoded
from haven.catalog.errors import CatalogError, GroupBusy
from haven.catalog.models import (
    CreatedResourceRow,
    GroupLockRow,
    GroupMemberRow,
    GroupPlacementRow,
    GroupRow,
    GroupStateChangeRow,
    OperationRow,
    PlanRow,
    PointProjectRow,
    PointRow,
    PointServersRow,
    StepRow,
)
from haven.domain.codec import from_data, to_data
from haven.domain.errors import ConflictError, ExitCode, NotFoundError
from haven.domain.groups import GROUP_STATES, GroupState
from haven.domain.operations import (
    OPERATION_STATES,
    STEP_STATES,
    Operation,
    OperationKind,
    OperationState,
    Step,
    StepState,
)
from haven.domain.points import POINT_STATES, Damage, PointState, RecoveryPoint
from haven.domain.project import LedgerKind, ProjectSnapshot
from haven.domain.resources import KIND_TYPES, Resource, ResourceKind, Resources


@dataclass(frozen=True, slots=True)
class CreatedResource:
    """A resource an operation created at a site (the ledger drill cleanup uses)."""

    operation_id: str
    group: str
    site: str
    kind: LedgerKind
    ref: str  # the site's id for it
    name: str
    removed: bool = False


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a group runs now; ``servers`` maps plan server names to ids at ``active_site``."""

    group: str
    active_site: str
    standby_site: str
    servers: dict[str, str]


class Catalog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None) -> Catalog:
        return cls(open_engine(url))

    def describe(self) -> str:
        return redact_url(str(self.engine.url))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except OperationalError as exc:
            raise CatalogError(f"catalog write failed: {str(exc.orig)[:200]}") from None
        finally:
            session.close()

    # --- resources -----------------------------------------------------------------
    def resources(self, session: Session | None = None) -> Resources:
        if session is not None:
            return res_rows.load_all(session)
        with self.transaction() as s:
            return res_rows.load_all(s)

    def get(self, kind: ResourceKind, name: str) -> Resource:
        with self.transaction() as s:
            row = s.get(res_rows.ROW_TYPES[kind], name)
            if row is None:
                known = s.scalars(select(res_rows.ROW_TYPES[kind].name)).all()
                raise NotFoundError(
                    f"no {kind.value} named {name!r} (known: {', '.join(known) or 'none'})"
                )
            resource: Resource = decoded(
                f"{kind.value} {name!r}", from_data, KIND_TYPES[kind], row.spec
            )
            return resource

    def write_resources(self, session: Session, desired: Resources) -> None:
        """Create or update every resource in ``desired`` (dependency order)."""
        try:
            for kind in ResourceKind:
                for resource in desired.of_kind(kind):
                    res_rows.upsert(session, kind, resource)
            session.flush()
        except SAIntegrityError as exc:
            raise CatalogError(f"catalog constraint violated: {str(exc.orig)[:200]}") from None

    def generations(self, kind: ResourceKind, names: list[str]) -> dict[str, int]:
        with self.transaction() as s:
            return res_rows.generations(s, kind, names)

    # --- group state and locks -------------------------------------------------------
    def group_state(self, group: str) -> GroupState:
        with self.transaction() as s:
            row = self._group_row(s, group)
            return decoded(f"group {group!r}", GroupState, row.state)

    def set_group_state(self, group: str, target: GroupState) -> GroupState:
        """Move a group along its transition table; raises IllegalTransition otherwise."""
        with self.transaction() as s:
            row = self._group_row(s, group)
            current = decoded(f"group {group!r}", GroupState, row.state)
            row.state = GROUP_STATES.transition(current, target).value
            if current is not target:  # the history usage integrates protected time over
                s.add(GroupStateChangeRow(group_name=group, state=target.value,
                                          changed_at=datetime.now(UTC)))  # fmt: skip
            return target

    def _group_row(self, s: Session, group: str) -> GroupRow:
        row = s.get(GroupRow, group)
        if row is None:
            raise NotFoundError(f"no group named {group!r}")
        return row

    def acquire_group_lock(self, group: str, operation_id: str) -> None:
        """Take the group's lock for ``operation_id``; re-entrant for the same operation."""
        with self.transaction() as s:
            row = s.get(GroupLockRow, group, with_for_update=True)
            if row is not None:
                if row.operation_id != operation_id:
                    raise GroupBusy(group, row.operation_id)
                return
            s.add(
                GroupLockRow(
                    group_name=group, operation_id=operation_id, acquired_at=datetime.now(UTC)
                )
            )
            try:
                s.flush()
            except SAIntegrityError:
                raise GroupBusy(group, "<another operation>") from None

    def release_group_lock(self, group: str, operation_id: str) -> None:
        with self.transaction() as s:
            row = s.get(GroupLockRow, group)
            if row is not None and row.operation_id == operation_id:
                s.delete(row)

    # --- recovery points ----------------------------------------------------------------
    def save_point(self, point: RecoveryPoint) -> None:
        """Create a point, or rewrite it. A rewrite that changes its state must follow the
        point state machine (IllegalTransition otherwise, nothing written)."""
        with self.transaction() as s:
            row = s.get(PointRow, point.id, with_for_update=True)
            if row is not None and row.state != point.state.value:
                POINT_STATES.transition(PointState(row.state), point.state)
            s.merge(_point_row(point))

    def point(self, point_id: str) -> RecoveryPoint:
        with self.transaction() as s:
            row = s.get(PointRow, point_id)
            if row is None:
                raise NotFoundError(f"no recovery point {point_id!r}")
            return _point(row)

    def mark_point_damaged(self, point_id: str, damage: Damage) -> RecoveryPoint:
        """COMMITTED -> DAMAGED with ``damage``; a point already DAMAGED gains the new
        findings (objects united). Any other state: IllegalTransition."""
        with self.transaction() as s:
            point = self._locked_point(s, point_id)
            if point.state is PointState.DAMAGED and point.damage is not None:
                damage = point.damage.merged(damage)
            else:
                POINT_STATES.transition(point.state, PointState.DAMAGED)
            updated = replace(point, state=PointState.DAMAGED, damage=damage)
            s.merge(_point_row(updated))
            return updated

    def mark_point_intact(self, point_id: str) -> RecoveryPoint:
        """DAMAGED -> COMMITTED (a later check found every object intact); the damage
        record is dropped. A COMMITTED point is returned unchanged."""
        with self.transaction() as s:
            point = self._locked_point(s, point_id)
            if point.state is PointState.COMMITTED:
                return point
            POINT_STATES.transition(point.state, PointState.COMMITTED)
            updated = replace(point, state=PointState.COMMITTED, damage=None)
            s.merge(_point_row(updated))
            return updated

    def _locked_point(self, s: Session, point_id: str) -> RecoveryPoint:
        row = s.get(PointRow, point_id, with_for_update=True)
        if row is None:
            raise NotFoundError(f"no recovery point {point_id!r}")
        return _point(row)

    def points(self, group: str) -> list[RecoveryPoint]:
        with self.transaction() as s:
            rows = s.scalars(
                select(PointRow).where(PointRow.group_name == group).order_by(PointRow.created_at)
            ).all()
            return [_point(r) for r in rows]

    def points_page(self, group: str, limit: int, marker: str | None = None) -> list[RecoveryPoint]:
        """A page of ``group``'s points, newest first (at most ``limit``, read in SQL).
        ``marker``: only those older than that point of the group (the page after it;
        NotFoundError when it is not a point of ``group``)."""
        with self.transaction() as s:
            q = (
                select(PointRow)
                .where(PointRow.group_name == group)
                .order_by(PointRow.created_at.desc(), PointRow.id.desc())
                .limit(limit)
            )
            if marker is not None:
                after = s.get(PointRow, marker)
                if after is None or after.group_name != group:
                    raise NotFoundError(f"no recovery point {marker!r} of group {group!r}")
                q = q.where(
                    (PointRow.created_at < after.created_at)
                    | ((PointRow.created_at == after.created_at) & (PointRow.id < marker))
                )
            return [_point(r) for r in s.scalars(q).all()]

    # --- operations -----------------------------------------------------------------------
    def save_operation(self, op: Operation) -> None:
        """Create an operation, or rewrite it. A rewrite that changes its state must follow
        the operation state machine (IllegalTransition otherwise, nothing written)."""
        with self.transaction() as s:
            row = s.get(OperationRow, op.id, with_for_update=True)
            if row is not None and row.state != op.state.value:
                OPERATION_STATES.transition(OperationState(row.state), op.state)
            s.merge(submissions.operation_row(op))

    def save_step(self, operation_id: str, step: Step) -> None:
        with self.transaction() as s:
            row = s.scalars(
                select(StepRow).where(StepRow.operation_id == operation_id, StepRow.seq == step.seq)
            ).one_or_none()
            if row is None:
                s.add(
                    StepRow(
                        operation_id=operation_id,
                        seq=step.seq,
                        name=step.name,
                        state=step.state.value,
                        started_at=step.started_at,
                        finished_at=step.finished_at,
                        detail=step.detail,
                    )
                )
            else:
                if row.state != step.state.value:
                    STEP_STATES.transition(StepState(row.state), step.state)
                row.state = step.state.value
                row.finished_at = step.finished_at
                row.detail = step.detail

    def operation(self, operation_id: str) -> Operation:
        with self.transaction() as s:
            row = s.get(OperationRow, operation_id)
            if row is None:
                raise NotFoundError(f"no operation {operation_id!r}")
            steps = s.scalars(
                select(StepRow).where(StepRow.operation_id == operation_id).order_by(StepRow.seq)
            ).all()
            return _operation(row, tuple(_step(st) for st in steps))

    # --- engine additions: operation listing, created resources, placement -----------------
    def operations(
        self,
        group: str | None = None,
        limit: int = 50,
        *,
        groups: Collection[str] | None = None,
        marker: str | None = None,
    ) -> list[Operation]:
        """Newest first, without steps (use ``operation(id)`` for the step log).
        ``groups``: only operations of these groups; ``marker``: only those older than
        that operation (the next page after it; NotFoundError for an unknown marker)."""
        with self.transaction() as s:
            q = (
                select(OperationRow)
                .order_by(OperationRow.created_at.desc(), OperationRow.id.desc())
                .limit(limit)
            )
            if group is not None:
                q = q.where(OperationRow.group_name == group)
            if groups is not None:
                q = q.where(OperationRow.group_name.in_(list(groups)))
            if marker is not None:
                after = s.get(OperationRow, marker)
                if after is None:
                    raise NotFoundError(f"no operation {marker!r} (the marker)")
                q = q.where(
                    (OperationRow.created_at < after.created_at)
                    | ((OperationRow.created_at == after.created_at) & (OperationRow.id < marker))
                )
            return [_operation(r) for r in s.scalars(q).all()]

    # --- tenancy: the project owning a group, deleting, submitting ----------------------
    def group_project(self, group: str) -> str | None:
        """The Keystone project owning ``group`` (None: operator-owned)."""
        with self.transaction() as s:
            return self._group_row(s, group).project

    def group_names(self, project: str | None) -> list[str]:
        """The groups ``project`` owns (None: the operator-owned ones), by name."""
        with self.transaction() as s:
            q = select(GroupRow.name).order_by(GroupRow.name)
            q = q.where(
                GroupRow.project.is_(None) if project is None else GroupRow.project == project
            )
            return list(s.scalars(q).all())

    def delete_plan(self, name: str) -> None:
        with self.transaction() as s:
            row = s.get(PlanRow, name)
            if row is None:
                raise NotFoundError(f"no plan named {name!r}")
            lock = s.get(GroupLockRow, row.group_name)
            if lock is not None:
                raise GroupBusy(row.group_name, lock.operation_id)
            s.delete(row)

    def delete_group(self, name: str) -> None:
        """Only a group without plans, points and running operation (its operations'
        history stays: an admin can still read it)."""
        with self.transaction() as s:
            self._group_row(s, name)
            lock = s.get(GroupLockRow, name)
            if lock is not None:
                raise GroupBusy(name, lock.operation_id)
            plans = s.scalars(select(PlanRow.name).where(PlanRow.group_name == name)).all()
            if plans:
                raise ConflictError(
                    f"group {name!r} is used by plans {', '.join(plans)}; delete them first"
                )
            points = s.scalar(
                select(func.count()).select_from(PointRow).where(PointRow.group_name == name)
            )
            if points:
                raise ConflictError(
                    f"group {name!r} has {points} recovery points; a group is deleted only "
                    "without points (delete or prune them first)"
                )
            s.execute(delete(GroupMemberRow).where(GroupMemberRow.group_name == name))
            s.execute(delete(GroupPlacementRow).where(GroupPlacementRow.group_name == name))
            s.execute(delete(GroupRow).where(GroupRow.name == name))

    def submit_operation(
        self, op: Operation, claim: submissions.IdempotencyClaim | None = None
    ) -> tuple[Operation, bool]:
        """Record ``op`` (PENDING) holding its group's lock, with its idempotency key, in
        one transaction. Returns (operation, replayed): an earlier submit's operation when
        ``claim`` was used with the same request. GroupBusy when the group is locked;
        IdempotencyMismatch when the key came with another request."""
        try:
            with self.transaction() as s:
                earlier = submissions.replayed(s, claim)
                if earlier is None:
                    submissions.insert(s, submissions.operation_row(op), claim)
        except (SAIntegrityError, GroupBusy):
            # a concurrent submit committed first (its lock, operation and key together):
            # a replay of it when it carried this key and request, else the group is busy
            with self.transaction() as s:
                earlier = submissions.replayed(s, claim)
                lock = s.get(GroupLockRow, op.group)
                holder = lock.operation_id if lock is not None else "<another operation>"
            if earlier is None:
                raise GroupBusy(op.group, holder) from None
        if earlier is not None:
            return self.operation(earlier), True
        return op, False

    def group_lock_holder(self, group: str) -> str | None:
        with self.transaction() as s:
            row = s.get(GroupLockRow, group)
            return row.operation_id if row is not None else None

    def record_created(self, res: CreatedResource) -> None:
        """Idempotent: recording the same (operation, site, kind, ref) twice is a no-op."""
        with self.transaction() as s:
            found = s.scalars(
                select(CreatedResourceRow).where(
                    CreatedResourceRow.operation_id == res.operation_id,
                    CreatedResourceRow.site == res.site,
                    CreatedResourceRow.kind == res.kind.value,
                    CreatedResourceRow.ref == res.ref,
                )
            ).one_or_none()
            if found is None:
                s.add(
                    CreatedResourceRow(
                        operation_id=res.operation_id,
                        group_name=res.group,
                        site=res.site,
                        kind=res.kind.value,
                        ref=res.ref,
                        name=res.name,
                        created_at=datetime.now(UTC),
                        removed_at=None,
                    )
                )

    def mark_removed(self, operation_id: str, site: str, kind: LedgerKind, ref: str) -> None:
        with self.transaction() as s:
            for row in s.scalars(
                select(CreatedResourceRow).where(
                    CreatedResourceRow.operation_id == operation_id,
                    CreatedResourceRow.site == site,
                    CreatedResourceRow.kind == kind.value,
                    CreatedResourceRow.ref == ref,
                )
            ):
                row.removed_at = row.removed_at or datetime.now(UTC)

    def created_resources(self, operation_id: str) -> list[CreatedResource]:
        with self.transaction() as s:
            rows = s.scalars(
                select(CreatedResourceRow)
                .where(CreatedResourceRow.operation_id == operation_id)
                .order_by(CreatedResourceRow.id)
            ).all()
            return [
                CreatedResource(
                    r.operation_id,
                    r.group_name,
                    r.site,
                    LedgerKind(r.kind),
                    r.ref,
                    r.name,
                    r.removed_at is not None,
                )
                for r in rows
            ]

    def placement(self, group: str) -> Placement | None:
        with self.transaction() as s:
            row = s.get(GroupPlacementRow, group)
            if row is None:
                return None
            return Placement(group, row.active_site, row.standby_site, dict(row.servers))

    def set_placement(self, placement: Placement) -> None:
        with self.transaction() as s:
            s.merge(
                GroupPlacementRow(
                    group_name=placement.group,
                    active_site=placement.active_site,
                    standby_site=placement.standby_site,
                    servers=dict(placement.servers),
                    updated_at=datetime.now(UTC),
                )
            )

    def save_point_servers(self, point_id: str, data: dict[str, Any]) -> None:
        """Server definitions captured with a point (``haven.domain.codec`` form)."""
        with self.transaction() as s:
            s.merge(PointServersRow(point_id=point_id, data=data))

    def point_servers(self, point_id: str) -> dict[str, Any]:
        with self.transaction() as s:
            row = s.get(PointServersRow, point_id)
            if row is None:
                raise NotFoundError(f"no server definitions recorded for point {point_id}")
            return dict(row.data)

    def save_point_project(self, point_id: str, project: ProjectSnapshot) -> None:
        """The project infrastructure captured with a point (sites with projects only)."""
        with self.transaction() as s:
            s.merge(PointProjectRow(point_id=point_id, data=to_data(project)))

    def point_project(self, point_id: str) -> ProjectSnapshot | None:
        """None for a point of a site without projects (or taken before they were kept)."""
        with self.transaction() as s:
            row = s.get(PointProjectRow, point_id)
            return None if row is None else from_data(ProjectSnapshot, dict(row.data))


def _operation(row: OperationRow, steps: tuple[Step, ...] = ()) -> Operation:
    return decoded(f"operation {row.id!r}", _build_operation, row, steps)


def _build_operation(row: OperationRow, steps: tuple[Step, ...]) -> Operation:
    return Operation(
        id=row.id,
        kind=OperationKind(row.kind),
        group=row.group_name,
        state=OperationState(row.state),
        created_at=row.created_at,
        finished_at=row.finished_at,
        params=row.params,
        result=row.result,
        error=row.error,
        steps=steps,
        error_type=row.error_type or "",
        exit_code=_exit_code(row.exit_code),
    )


def _exit_code(value: int | None) -> ExitCode | None:
    """None for rows from before 0003, and for a code this version does not know."""
    if value is None or value not in ExitCode._value2member_map_:
        return None
    return ExitCode(value)


def _utc(when: datetime) -> datetime:
    """Aware UTC (documents written by older code may hold naive UTC times)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _point(row: PointRow) -> RecoveryPoint:
    point = decoded(f"recovery point {row.id!r}", from_data, RecoveryPoint, row.data)
    damage = point.damage
    if damage is not None:
        damage = replace(damage, found_at=_utc(damage.found_at))
    return replace(point, created_at=_utc(point.created_at), damage=damage)


def _point_row(point: RecoveryPoint) -> PointRow:
    return PointRow(
        id=point.id,
        group_name=point.group,
        state=point.state.value,
        created_at=point.created_at,
        data=to_data(point),
    )


def _step(row: StepRow) -> Step:
    return decoded(f"step {row.seq} of operation {row.operation_id!r}", _build_step, row)


def _build_step(row: StepRow) -> Step:
    return Step(
        seq=row.seq,
        name=row.name,
        state=StepState(row.state),
        started_at=row.started_at,
        finished_at=row.finished_at,
        detail=row.detail,
    )
