"""Disaster-recovery commands: protect, failover, drill, cleanup, failback, suspend, resume.

Each runs one durable operation and prints its step log and result (``--json``: the
operation as one document, with ``error_type`` and ``exit_code``). Exit 0 when it
succeeded; when it failed, the exit code of the error that failed it (README table: 3
a point or name not found, 4 busy or the group's state forbids it, 6 damaged data, 7 a
wrong key...).
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from haven.cli.opview import exit_code, live_progress, render
from haven.cli.output import JSON_OPTION, console, guarded, print_json
from haven.domain.operations import Operation


def _show(start: Callable[..., Operation], as_json: bool, **kwargs: object) -> None:
    """Run one engine action with a live display, render the operation, exit with its code."""
    with live_progress(not as_json) as progress:
        op = start(progress=progress, **kwargs)
    render(op, as_json)
    code = exit_code(op)
    if code:
        raise typer.Exit(code)


@guarded
def protect(group: str = typer.Argument(..., help="Protection group."),
            as_json: bool = JSON_OPTION) -> None:  # fmt: skip
    """Take a recovery point of GROUP now (ordered freeze, snapshot, thaw, backup)."""
    from haven.engine import api

    _show(api.protect, as_json, group=group)


@guarded
def failover(
    plan: str = typer.Argument(..., help="Recovery plan."),
    planned: bool = typer.Option(False, "--planned", help="Stop the source, final point first."),
    point: str | None = typer.Option(None, "--point", help="Recover this point (unplanned)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Bring the plan's group up at its recovery site."""
    from haven.engine import api

    _show(api.failover, as_json, plan=plan, planned=planned, point=point)


@guarded
def drill(
    plan: str = typer.Argument(..., help="Recovery plan."),
    point: str | None = typer.Option(None, "--point", help="Recover this point."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Test failover into the plan's isolated test network; production is not touched."""
    from haven.engine import api

    _show(api.drill, as_json, plan=plan, point=point)


@guarded
def cleanup(target: str = typer.Argument(..., help="A drill's operation id, or its plan."),
            as_json: bool = JSON_OPTION) -> None:  # fmt: skip
    """Remove exactly what a drill created (the plan's newest drill not yet cleaned up)."""
    from haven.engine import api

    _show(api.cleanup, as_json, target=target)


@guarded
def failback(plan: str = typer.Argument(..., help="Recovery plan used for the failover."),
             as_json: bool = JSON_OPTION) -> None:  # fmt: skip
    """Reverse-protect (delta only), then a planned failover back; site roles swap back."""
    from haven.engine import api

    _show(api.failback, as_json, plan=plan)


@guarded
def suspend(group: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Pause protection of GROUP (e.g. network maintenance); its RPO may grow meanwhile."""
    from haven.engine import api

    state = api.suspend(group)
    print_json({"group": group, "state": state.value}) if as_json else console.print(
        f"{group}: {state.value} (no points are taken; the RPO may grow)"
    )


@guarded
def resume(group: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Resume protection of GROUP; the next point increments from the last one."""
    from haven.engine import api

    state = api.resume(group)
    print_json({"group": group, "state": state.value}) if as_json else console.print(
        f"{group}: {state.value}"
    )


def register(app: typer.Typer) -> None:
    for fn in (protect, failover, drill, cleanup, failback, suspend, resume):
        app.command(fn.__name__)(fn)
