"""Submitting an operation atomically: the group lock, the operation row and its
idempotency key land in one transaction, or none of them does.

Contracts:
- At most one operation per group: the lock row's primary key is the group, so of any
  number of concurrent submits for one group exactly one commits; the others get
  GroupBusy (or, when they carry the committed submit's idempotency key and request, that
  operation back as a replay).
- An idempotency key is unique per project; a replay with another request hash is
  :class:`IdempotencyMismatch` (the caller reused a key for a different request).
- A key lives ``claim.ttl`` (24 h unless the API's ``HAVEN_API_IDEMPOTENCY_TTL`` says
  otherwise) from its first submit: after that it is free again (a new operation, whatever
  the request). Expired keys are pruned when keys are written, at most
  :data:`PRUNE_BATCH` rows per write (bounded work; a backlog goes over several writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from haven.catalog.errors import GroupBusy
from haven.catalog.models import GroupLockRow, IdempotencyKeyRow, OperationRow
from haven.domain.errors import ValidationError
from haven.domain.operations import Operation

DEFAULT_KEY_TTL = timedelta(hours=24)
PRUNE_BATCH = 100  # expired keys deleted per key written


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    project: str  # the caller's project: keys of different projects never meet
    key: str
    request_hash: str  # of the submitted request, canonical form
    ttl: timedelta = DEFAULT_KEY_TTL  # how long the key answers with its operation


class IdempotencyMismatch(ValidationError):
    def __init__(self) -> None:
        super().__init__(
            "Idempotency-Key",
            "this key was used before with a different request; send a new key for a "
            "new request (or the same request to get its operation back)",
        )


def replayed(session: Session, claim: IdempotencyClaim | None) -> str | None:
    """The operation id an earlier submit with this key created (None: a new key, or one
    that expired: its row is deleted here, so the key is free for this submit)."""
    if claim is None:
        return None
    row = session.get(IdempotencyKeyRow, (claim.project, claim.key))
    if row is None:
        return None
    if row.created_at <= datetime.now(UTC) - claim.ttl:
        # a core DELETE (no stale-row check): a concurrent submit may delete it too; the
        # loser of the insert then finds the winner's fresh row and replays it
        session.execute(
            delete(IdempotencyKeyRow).where(
                IdempotencyKeyRow.project == claim.project, IdempotencyKeyRow.key == claim.key
            )
        )
        return None
    if row.request_hash != claim.request_hash:
        raise IdempotencyMismatch()
    return row.operation_id


def prune(session: Session, ttl: timedelta, batch: int = PRUNE_BATCH) -> int:
    """Delete up to ``batch`` keys older than ``ttl`` (any project); how many went."""
    cutoff = datetime.now(UTC) - ttl
    expired = session.execute(
        select(IdempotencyKeyRow.project, IdempotencyKeyRow.key)
        .where(IdempotencyKeyRow.created_at <= cutoff)
        .limit(batch)
    ).all()
    if expired:
        pk = tuple_(IdempotencyKeyRow.project, IdempotencyKeyRow.key)
        session.execute(delete(IdempotencyKeyRow).where(pk.in_([tuple(r) for r in expired])))
    return len(expired)


def insert(session: Session, op_row: OperationRow, claim: IdempotencyClaim | None) -> None:
    """Lock the group for the operation, record it and its key; flushes, so a lost race
    raises SQLAlchemy's IntegrityError here (the caller rolls back and reads again)."""
    now = datetime.now(UTC)
    holder = session.get(GroupLockRow, op_row.group_name)
    if holder is not None:
        raise GroupBusy(op_row.group_name, holder.operation_id)
    session.add(GroupLockRow(group_name=op_row.group_name, operation_id=op_row.id, acquired_at=now))
    session.add(op_row)
    if claim is not None:
        prune(session, claim.ttl)
        session.add(
            IdempotencyKeyRow(
                project=claim.project,
                key=claim.key,
                request_hash=claim.request_hash,
                operation_id=op_row.id,
                created_at=now,
            )
        )
    session.flush()


def operation_row(op: Operation) -> OperationRow:
    return OperationRow(
        id=op.id,
        kind=op.kind.value,
        group_name=op.group,
        state=op.state.value,
        created_at=op.created_at,
        finished_at=op.finished_at,
        params=dict(op.params),
        result=dict(op.result),
        error=op.error,
        error_type=op.error_type,
        exit_code=int(op.exit_code) if op.exit_code is not None else None,
    )


__all__ = [
    "DEFAULT_KEY_TTL",
    "GroupBusy",
    "IdempotencyClaim",
    "IdempotencyMismatch",
    "SAIntegrityError",
]
