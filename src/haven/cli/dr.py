"""Disaster-recovery commands: protect, failover, drill, cleanup, failback, suspend, resume.

Each runs one durable operation and prints its step log and result (``--json``: the
operation as one document, with ``error_type`` and ``exit_code``). Exit 0 when it
succeeded; when it failed, the exit code of the error that failed it (README table: 3
a point or name not found, 4 busy or the group's state forbids it, 6 damaged data, 7 a
wrong key...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from haven.cli.opview import exit_code, live_progress, render
from haven.cli.output import JSON_OPTION, console, guarded, print_json
from haven.domain.errors import NotFoundError
from haven.domain.operations import Operation, OperationKind
from haven.domain.resources import ResourceKind


def _run(kind: OperationKind, group: str, workflow: Callable[..., Any], *args: Any,
         as_json: bool, params: dict[str, str] | None = None) -> None:  # fmt: skip
    from haven.engine import service

    with live_progress(not as_json) as progress:
        op = service.run(kind, group, workflow, *args, params=params, progress=progress)
    _done(op, as_json)


def _done(op: Operation, as_json: bool) -> None:
    render(op, as_json)
    code = exit_code(op)
    if code:
        raise typer.Exit(code)


def _plan_group(plan: str) -> str:
    from haven.engine import services

    return str(services.catalog().get(ResourceKind.PLAN, plan).group)


@guarded
def protect(group: str = typer.Argument(..., help="Protection group."),
            as_json: bool = JSON_OPTION) -> None:  # fmt: skip
    """Take a recovery point of GROUP now (ordered freeze, snapshot, thaw, backup)."""
    from haven.engine import services
    from haven.engine.workflows.protect import protect_workflow

    services.catalog().get(ResourceKind.GROUP, group)
    _run(OperationKind.PROTECT, group, protect_workflow, group, as_json=as_json)


@guarded
def failover(
    plan: str = typer.Argument(..., help="Recovery plan."),
    planned: bool = typer.Option(False, "--planned", help="Stop the source, final point first."),
    point: str | None = typer.Option(None, "--point", help="Recover this point (unplanned)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Bring the plan's group up at its recovery site."""
    from haven.engine.workflows.failover import failover_workflow

    params = {"plan": plan, "planned": str(planned), "point": point or ""}
    _run(OperationKind.FAILOVER, _plan_group(plan), failover_workflow, plan, planned, point,
         as_json=as_json, params=params)  # fmt: skip


@guarded
def drill(
    plan: str = typer.Argument(..., help="Recovery plan."),
    point: str | None = typer.Option(None, "--point", help="Recover this point."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Test failover into the plan's isolated test network; production is not touched."""
    from haven.engine.workflows.test_failover import drill_workflow

    _run(OperationKind.TEST_FAILOVER, _plan_group(plan), drill_workflow, plan, point,
         as_json=as_json, params={"plan": plan})  # fmt: skip


@guarded
def cleanup(target: str = typer.Argument(..., help="A drill's operation id, or its plan."),
            as_json: bool = JSON_OPTION) -> None:  # fmt: skip
    """Remove exactly what a drill created (the plan's oldest drill not yet cleaned up)."""
    from haven.engine import services
    from haven.engine.workflows.cleanup import cleanup_workflow
    from haven.engine.workflows.test_failover import uncleaned_drills

    cat = services.catalog()
    try:
        drill_op = cat.operation(target)
    except NotFoundError:
        pending = uncleaned_drills(_plan_group(target))
        if not pending:
            raise NotFoundError(f"plan {target} has no drill left to clean up") from None
        drill_op = cat.operation(pending[-1])
    _run(OperationKind.CLEANUP, drill_op.group, cleanup_workflow, drill_op.id,
         as_json=as_json, params={"drill": drill_op.id})  # fmt: skip


@guarded
def failback(plan: str = typer.Argument(..., help="Recovery plan used for the failover."),
             as_json: bool = JSON_OPTION) -> None:  # fmt: skip
    """Reverse-protect (delta only), then a planned failover back; site roles swap back."""
    from haven.engine.workflows.failback import failback_workflow

    _run(OperationKind.FAILBACK, _plan_group(plan), failback_workflow, plan,
         as_json=as_json, params={"plan": plan})  # fmt: skip


@guarded
def suspend(group: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Pause protection of GROUP (e.g. network maintenance); its RPO may grow meanwhile."""
    from haven.engine import lifecycle

    state = lifecycle.suspend(group)
    print_json({"group": group, "state": state.value}) if as_json else console.print(
        f"{group}: {state.value} (no points are taken; the RPO may grow)"
    )


@guarded
def resume(group: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Resume protection of GROUP; the next point increments from the last one."""
    from haven.engine import lifecycle

    state = lifecycle.resume(group)
    print_json({"group": group, "state": state.value}) if as_json else console.print(
        f"{group}: {state.value}"
    )


def register(app: typer.Typer) -> None:
    for fn in (protect, failover, drill, cleanup, failback, suspend, resume):
        app.command(fn.__name__)(fn)
