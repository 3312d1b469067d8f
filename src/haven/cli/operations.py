"""``haven operations list|show|resume``: the durable operations and their step logs."""

from __future__ import annotations

import typer
from rich.table import Table

from haven.cli.opview import exit_code, live_progress, op_data, render
from haven.cli.output import JSON_OPTION, console, guarded, print_json

app = typer.Typer(help="Operations: list them, read a step log, resume one after a crash.")


@app.command("list")
@guarded
def list_(
    group: str | None = typer.Option(None, "--group", "-g", help="Only this group."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000),
    as_json: bool = JSON_OPTION,
) -> None:
    """Newest first."""
    from haven.engine import api

    found = api.operations(group, limit)
    if as_json:
        print_json([{k: v for k, v in op_data(op).items() if k != "steps"} for op in found])
        return
    table = Table(title="operations")
    for col in ("id", "kind", "group", "state", "created", "error"):
        table.add_column(col, overflow="fold")
    for op in found:
        table.add_row(op.id, op.kind.value, op.group, op.state.value,
                      op.created_at.strftime("%Y-%m-%d %H:%M:%S"), op.error[:80])  # fmt: skip
    console.print(table)


@app.command("show")
@guarded
def show(operation: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """The operation's step log and result."""
    from haven.engine import api

    render(api.operation(operation), as_json)


@app.command("resume")
@guarded
def resume(operation: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Finish an operation whose process died: completed steps are not run again."""
    from haven.engine import api

    with live_progress(not as_json) as progress:
        op = api.resume_operation(operation, progress=progress)
    render(op, as_json)
    code = exit_code(op)
    if code:
        raise typer.Exit(code)
