"""``haven serve``: run the engine and take points for every group as its policy says.

A group is due when its newest committed point is at least ``interval`` old (or it has
none) and it is protected, unprotected or reverse-protected (never while suspended or in
the middle of a failover/failback), no operation holds its lock, and its last protect
was not refused for its project's quota less than an interval ago. Due groups are
protected in parallel threads, one operation per group. The process runs as executor
``serve-<host>``: restarting it makes DBOS resume whatever it was doing when it died.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from haven.domain.errors import QuotaExceeded, SizeQuotaExceeded
from haven.domain.groups import GroupState
from haven.domain.operations import Operation, OperationKind
from haven.engine import resolve, runtime, service, services

_PROTECTABLE = {GroupState.UNPROTECTED, GroupState.PROTECTED, GroupState.REVERSE_PROTECTED}


def due_groups(now: datetime | None = None) -> list[tuple[str, float]]:
    """(group, seconds overdue) for every group that should be protected now."""
    now = now or datetime.now(UTC)
    cat = services.catalog()
    out: list[tuple[str, float]] = []
    for g in cat.resources().groups:
        if cat.group_state(g.name) not in _PROTECTABLE or cat.group_lock_holder(g.name):
            continue
        interval = resolve.policy(g.policy).interval_seconds
        points = resolve.committed_points(g.name)
        age = (now - points[-1].created_at).total_seconds() if points else float("inf")
        if age >= interval and not _refused_for_quota(g.name, interval, now):
            out.append((g.name, age - interval))
    return sorted(out, key=lambda x: -x[1])


_QUOTA_ERRORS = frozenset({QuotaExceeded.__name__, SizeQuotaExceeded.__name__})


def _refused_for_quota(group: str, interval: float, now: datetime) -> bool:
    """The group's last protect was refused for its project's quota less than an
    interval ago: not tried again before (a quota is not freed by retrying)."""
    ops = services.catalog().operations(group, limit=1)
    last = ops[0] if ops else None
    if last is None or last.error_type not in _QUOTA_ERRORS or last.finished_at is None:
        return False
    return (now - last.finished_at).total_seconds() < interval


def next_due_in(now: datetime | None = None) -> float:
    """Seconds until the earliest group becomes due (at most 5 s: the catalog may change)."""
    now = now or datetime.now(UTC)
    cat = services.catalog()
    wait = 5.0
    for g in cat.resources().groups:
        points = resolve.committed_points(g.name)
        if not points:
            continue
        interval = resolve.policy(g.policy).interval_seconds
        wait = min(wait, interval - (now - points[-1].created_at).total_seconds())
    return max(0.2, wait)


def serve(
    stop: threading.Event,
    on_operation: Callable[[Operation], None] | None = None,
    max_workers: int = 4,
) -> None:
    from haven.engine.workflows.protect import protect_workflow

    runtime.launch(f"serve-{socket.gethostname()}")
    for op in service.orphaned():  # operations whose CLI process was killed on this host
        service.adopt(op.id)
    running: dict[str, Future[Operation]] = {}
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        while not stop.is_set():
            for name, fut in list(running.items()):
                if fut.done():
                    del running[name]
                    if on_operation is not None and fut.exception() is None:
                        on_operation(fut.result())
            for name, _late in due_groups():
                if name not in running:
                    running[name] = pool.submit(
                        service.run, OperationKind.PROTECT, name, protect_workflow, name
                    )
            # a scheduling wait (the next point is due then), not a readiness check
            stop.wait(min(next_due_in(), 1.0) if running else next_due_in())
        for fut in running.values():
            fut.result()
