"""Submitting an operation without waiting for it (the API): recorded, holding its
group's lock, and returned at once; the workflow runs in this process's engine.

Contracts:
- When :func:`submit` returns, the operation exists (PENDING) and holds the group lock;
  a second submit for the same group gets ConflictError (409) until it ends. Of many
  concurrent submits for one group exactly one is recorded (the catalog's lock row).
- With an idempotency key, a replay of the same request returns the same operation
  (``replayed`` True); the same key with another request is a ValidationError naming
  ``Idempotency-Key``. Keys are kept per project, with the operation, for ``key_ttl``
  (24 h by default): an expired key is free again (catalog/submissions.py).
- The workflow runs as a durable DBOS workflow of this process's executor
  (``api-<host>``): a restarted API process recovers what it left unfinished. A waiter
  thread records a failure the workflow could not record itself (a bug) on the
  operation. The scale issue moves this onto DBOS queues.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dbos import DBOS, SetWorkflowID

from haven.catalog.submissions import DEFAULT_KEY_TTL, IdempotencyClaim
from haven.domain.errors import HavenError, NotFoundError, ValidationError
from haven.domain.ids import new_id
from haven.domain.operations import Failure, Operation, OperationKind, OperationState
from haven.engine import ops, quotas, runtime, services
from haven.engine import scope as scopes
from haven.engine.scope import Scope
from haven.engine.service import EXECUTOR_PARAM

log = logging.getLogger("haven.engine.submit")
SUBMITTABLE = (
    OperationKind.PROTECT,
    OperationKind.TEST_FAILOVER,
    OperationKind.CLEANUP,
    OperationKind.FAILOVER,
    OperationKind.FAILBACK,
)


@dataclass(frozen=True, slots=True)
class Submission:
    """What to run: ``group`` for protect, ``plan`` for the others (cleanup: the plan's
    newest drill not yet cleaned up); ``point`` for failover and drill; ``planned`` for
    failover."""

    kind: OperationKind
    group: str | None = None
    plan: str | None = None
    point: str | None = None
    planned: bool = False

    def request_hash(self) -> str:
        canonical = json.dumps({**asdict(self), "kind": self.kind.value}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Prepared:
    group: str
    workflow: Callable[..., Any]
    args: tuple[Any, ...]
    params: dict[str, str]


def executor() -> str:
    return f"api-{socket.gethostname()}"


def submit(
    sub: Submission,
    scope: Scope,
    idempotency_key: str | None = None,
    key_ttl: timedelta = DEFAULT_KEY_TTL,
) -> tuple[Operation, bool]:
    """Record and start ``sub``; returns (operation, replayed)."""
    prepared = _prepare(sub, scope)
    claim = None
    if idempotency_key is not None:
        owner = scope.project or ""  # the operator's keys share one namespace
        claim = IdempotencyClaim(owner, idempotency_key, sub.request_hash(), key_ttl)
    exe = runtime.current() or executor()
    op_id = new_id("op")
    owner_params = {EXECUTOR_PARAM: exe, "host": socket.gethostname(), "pid": str(os.getpid())}
    op = Operation(op_id, sub.kind, prepared.group, OperationState.PENDING, datetime.now(UTC),
                   params={**prepared.params, **owner_params})  # fmt: skip
    recorded, replayed = services.catalog().submit_operation(op, claim)
    if replayed:
        scopes.operation(scope, recorded.id)  # a key of this project: its own operation
        return recorded, True
    try:
        runtime.launch(exe)
        with SetWorkflowID(op_id):
            handle = DBOS.start_workflow(prepared.workflow, op_id, *prepared.args)
    except Exception as exc:  # the engine could not start it: fail it, free the group
        ops.mark_failed(op_id, Failure.of(exc), True)
        raise
    threading.Thread(target=_watch, args=(op_id, handle), name=f"wait-{op_id}", daemon=True).start()
    log.info("submitted %s %s of group %s", op_id, sub.kind.value, prepared.group,
             extra={"haven_operation": op_id, "haven_group": prepared.group})  # fmt: skip
    return recorded, False


def _watch(op_id: str, handle: Any) -> None:
    """Wait for the workflow; record a failure it could not record itself (a bug)."""
    try:
        handle.get_result()
    except HavenError:
        return  # recorded in the operation by the workflow's fail step
    except Exception as exc:
        if runtime.current() is None:
            return  # the engine stopped under it: DBOS recovers it at the next launch
        op = services.catalog().operation(op_id)
        if op.state in (OperationState.PENDING, OperationState.RUNNING):
            ops.mark_failed(op_id, Failure.of(exc), True)


def _prepare(sub: Submission, scope: Scope) -> _Prepared:
    if sub.kind not in SUBMITTABLE:
        raise ValidationError("kind", f"one of {', '.join(k.value for k in SUBMITTABLE)}")
    if sub.kind is OperationKind.PROTECT:
        if sub.group is None or sub.plan is not None:
            raise ValidationError("group", "protect takes a group (and no plan)")
        from haven.engine.workflows.protect import protect_workflow

        g = scopes.group(scope, sub.group)
        quotas.check_protect(g)  # 403/413 now, not a 202 and a failed operation later
        return _Prepared(sub.group, protect_workflow, (sub.group,), {})
    if sub.plan is None or sub.group is not None:
        raise ValidationError("plan", f"{sub.kind.value} takes a plan (and no group)")
    plan = scopes.plan(scope, sub.plan)
    if sub.point is not None:
        point = scopes.point(scope, sub.point)
        if point.group != plan.group:
            raise NotFoundError(f"no recovery point {sub.point!r} of plan {sub.plan!r}")
    return _for_plan(sub, plan.name, plan.group)


def _for_plan(sub: Submission, plan: str, group: str) -> _Prepared:
    kind = sub.kind
    if kind is OperationKind.FAILOVER:
        from haven.engine.workflows.failover import failover_workflow

        params = {"plan": plan, "planned": str(sub.planned), "point": sub.point or ""}
        return _Prepared(group, failover_workflow, (plan, sub.planned, sub.point), params)
    if sub.planned:
        raise ValidationError("planned", "only a failover is planned or not")
    if kind is OperationKind.TEST_FAILOVER:
        from haven.engine.workflows.test_failover import drill_workflow

        return _Prepared(group, drill_workflow, (plan, sub.point), {"plan": plan})
    if sub.point is not None:
        raise ValidationError("point", f"{kind.value} takes no point")
    if kind is OperationKind.FAILBACK:
        from haven.engine.workflows.failback import failback_workflow

        return _Prepared(group, failback_workflow, (plan,), {"plan": plan})
    from haven.engine.workflows.cleanup import cleanup_workflow
    from haven.engine.workflows.test_failover import uncleaned_drills

    pending = uncleaned_drills(group)
    if not pending:
        raise NotFoundError(f"plan {plan} has no drill left to clean up")
    return _Prepared(group, cleanup_workflow, (pending[-1],), {"drill": pending[-1]})
