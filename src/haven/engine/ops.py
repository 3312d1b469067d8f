"""Operation lifecycle in the catalog: create, begin (take the group lock), finish, fail.

A failed operation records the error's class name and exit code (``Failure.of``), so the
CLI exits with the code the error contract gives that error (3 not found, 4 conflict,
6 integrity, 7 security...) rather than one code for every failure.

The lock is held by the operation's id for its whole life, across crashes (it is a catalog
row, not a process lock); a resumed operation re-acquires it re-entrantly. Child
workflows (the final point of a planned failover) run under their parent's lock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from haven.domain.errors import NotFoundError
from haven.domain.operations import (
    OPERATION_STATES,
    Failure,
    Operation,
    OperationKind,
    OperationState,
)
from haven.engine import services
from haven.engine.model import Note
from haven.engine.steps import engine_step


def create_operation(
    op_id: str, kind: OperationKind, group: str, params: dict[str, str] | None = None
) -> Operation:
    """Record a new operation (PENDING) or return the existing one with this id."""
    cat = services.catalog()
    try:
        return cat.operation(op_id)
    except NotFoundError:
        op = Operation(
            op_id, kind, group, OperationState.PENDING, datetime.now(UTC), params=params or {}
        )
        cat.save_operation(op)
        return op


def begin(op_id: str, kind: OperationKind, group: str, lock_owner: str) -> None:
    """Mark the operation running and take (or re-take) the group lock for ``lock_owner``."""
    cat = services.catalog()
    op = create_operation(op_id, kind, group)
    cat.acquire_group_lock(group, lock_owner)
    if op.state is not OperationState.RUNNING:
        OPERATION_STATES.transition(op.state, OperationState.RUNNING)
        cat.save_operation(replace(op, state=OperationState.RUNNING, steps=()))


@engine_step("finish")
def finish(op_id: str, result: dict[str, str], release_lock: bool) -> Note:
    cat = services.catalog()
    op = cat.operation(op_id)
    if op.state is not OperationState.SUCCEEDED:
        OPERATION_STATES.transition(op.state, OperationState.SUCCEEDED)
        cat.save_operation(
            replace(
                op,
                state=OperationState.SUCCEEDED,
                finished_at=datetime.now(UTC),
                result={k: str(v) for k, v in result.items()},
                steps=(),
            )
        )
    if release_lock:
        cat.release_group_lock(op.group, op_id)
    return Note("succeeded")


def fail(op_id: str, exc: BaseException, release_lock: bool) -> Note:
    """Workflow code: record ``exc`` as the operation's failure (a durable step)."""
    return _fail(op_id, Failure.of(exc), release_lock)


@engine_step("fail")
def _fail(op_id: str, failure: Failure, release_lock: bool) -> Note:
    # the step carries the Failure, not the exception: DBOS records step arguments and
    # outputs, and plain data survives that where some exception types would not
    mark_failed(op_id, failure, release_lock)
    return Note(failure.message[:200])


def mark_failed(op_id: str, failure: Failure, release_lock: bool) -> None:
    cat = services.catalog()
    op = cat.operation(op_id)
    if op.state in (OperationState.PENDING, OperationState.RUNNING):
        cat.save_operation(
            replace(
                op,
                state=OperationState.FAILED,
                finished_at=datetime.now(UTC),
                error=failure.message[:2000],
                error_type=failure.error_type,
                exit_code=failure.exit_code,
                steps=(),
            )
        )
    if release_lock:
        cat.release_group_lock(op.group, op_id)
