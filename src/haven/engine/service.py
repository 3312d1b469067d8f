"""Starting, waiting for and resuming operations: the engine's API for the CLI.

``run(kind, group, workflow, *args)`` records the operation holding its group's lock (one
catalog transaction, like the API's ``submit``: of a CLI action and an API submit racing
for one group exactly one is recorded, the other gets ConflictError and leaves nothing
behind), launches the engine as the operation's own executor, runs the workflow under the
operation id (the DBOS workflow id) and returns the final Operation from the catalog.
``resume(op_id)`` relaunches as that executor: DBOS recovers the pending workflow, which
skips every step already recorded and re-runs the one that was interrupted.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dbos import DBOS, SetWorkflowID

from haven.catalog.errors import GroupBusy
from haven.domain.errors import ConflictError, HavenError
from haven.domain.ids import new_id
from haven.domain.operations import Failure, Operation, OperationKind, OperationState
from haven.engine import ops, runtime, services

EXECUTOR_PARAM = "executor"
Progress = Callable[[Operation], None]  # called with the operation (and its steps so far)


def run(
    kind: OperationKind,
    group: str,
    workflow: Callable[..., Any],
    *args: Any,
    params: dict[str, str] | None = None,
    executor: str | None = None,
    progress: Progress | None = None,
) -> Operation:
    op_id = new_id("op")
    exe = runtime.current() or executor or runtime.executor_for(op_id)
    owner = {EXECUTOR_PARAM: exe, "host": socket.gethostname(), "pid": str(os.getpid())}
    op = Operation(op_id, kind, group, OperationState.PENDING, datetime.now(UTC),
                   params={**(params or {}), **owner})  # fmt: skip
    try:
        services.catalog().submit_operation(op)  # the lock and the row, or neither
    except GroupBusy as busy:
        raise ConflictError(
            f"group {group!r} is busy with operation {busy.operation_id}; wait for it, or "
            f"if its process died resume it: haven operations resume {busy.operation_id}"
        ) from None
    try:
        runtime.launch(exe)
        with SetWorkflowID(op_id):
            handle = DBOS.start_workflow(workflow, op_id, *args)
    except Exception as exc:  # the engine could not start it: fail it, free the group
        ops.mark_failed(op_id, Failure.of(exc), True)
        raise
    return _wait(op_id, handle, progress)


def _wait(op_id: str, handle: Any, progress: Progress | None = None) -> Operation:
    if progress is not None:
        done = threading.Event()
        waiter = threading.Thread(target=_result, args=(handle, done), daemon=True)
        waiter.start()
        while not done.wait(0.25):  # a display refresh interval, not a readiness wait
            progress(services.catalog().operation(op_id))
        waiter.join()
    try:
        handle.get_result()
    except HavenError:
        pass  # recorded in the operation by the workflow's fail step
    except Exception as exc:  # a bug: still reported through the operation
        op = services.catalog().operation(op_id)
        if op.state is OperationState.RUNNING:
            ops.mark_failed(op_id, Failure.of(exc), True)
    return services.catalog().operation(op_id)


def _result(handle: Any, done: threading.Event) -> None:
    try:
        handle.get_result()
    except Exception:
        pass  # read again (and reported) by _wait
    finally:
        done.set()


def resume(op_id: str, progress: Progress | None = None) -> Operation:
    op = services.catalog().operation(op_id)
    if op.state in (OperationState.SUCCEEDED, OperationState.CANCELLED):
        return op
    exe = op.params.get(EXECUTOR_PARAM) or runtime.executor_for(op_id)
    runtime.launch(exe)  # DBOS recovers this executor's pending workflows on launch
    handle = DBOS.retrieve_workflow(op_id)
    return _wait(op_id, handle, progress)


def orphaned(host: str | None = None) -> list[Operation]:
    """Unfinished operations started on this host by a process that is gone."""
    host = host or socket.gethostname()
    found = []
    for op in services.catalog().operations(limit=500):
        if op.state not in (OperationState.PENDING, OperationState.RUNNING):
            continue
        if op.params.get("host") != host or "-" in op.id[3:]:  # children follow parents
            continue
        pid = int(op.params.get("pid", "0") or 0)
        if pid and not _alive(pid):
            found.append(op)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def adopt(op_id: str) -> None:
    """Have this running engine finish an operation whose process died (DBOS re-enqueues
    the workflow; completed steps are not run again)."""
    DBOS.resume_workflow(op_id)
