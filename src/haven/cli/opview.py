"""Showing operations: a live step display while one runs, its step log and result after.

Nothing secret reaches here: operations hold names, ids, sizes and times only. Times are
time-zone aware (the catalog returns UTC), so every ISO string carries its offset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table

from haven.cli.output import console, print_json
from haven.domain.errors import ExitCode
from haven.domain.operations import Operation, OperationState, StepState

_MARK = {
    StepState.DONE: "[green]✓[/green]",
    StepState.RUNNING: "[yellow]…[/yellow]",
    StepState.FAILED: "[red]✗[/red]",
    StepState.SKIPPED: "-",
}


def op_data(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "kind": op.kind.value,
        "group": op.group,
        "state": op.state.value,
        "created_at": op.created_at.isoformat(),
        "finished_at": op.finished_at.isoformat() if op.finished_at else None,
        "params": dict(op.params),
        "result": dict(op.result),
        "error": op.error,
        "error_type": op.error_type or None,
        "exit_code": exit_code(op),
        "steps": [
            {
                "seq": s.seq,
                "name": s.name,
                "state": s.state.value,
                "started_at": s.started_at.isoformat(),
                "finished_at": s.finished_at.isoformat() if s.finished_at else None,
                "detail": s.detail,
            }
            for s in op.steps
        ],
    }


def steps_table(op: Operation) -> Table:
    table = Table(title=f"{op.kind.value} {op.id} ({op.group}): {op.state.value}", expand=False)
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    for s in op.steps:
        took = (s.finished_at - s.started_at).total_seconds() if s.finished_at else None
        table.add_row(
            str(s.seq), s.name, _MARK[s.state], f"{took:.2f}s" if took is not None else "",
            s.detail,
        )  # fmt: skip
    return table


def render(op: Operation, as_json: bool) -> None:
    if as_json:
        print_json(op_data(op))
        return
    console.print(steps_table(op))
    if op.result:
        for key, value in sorted(op.result.items()):
            console.print(f"  {key}: {value}", highlight=False)
    if op.error:
        console.print(f"[red]error:[/red] {op.error}", highlight=False)


@contextmanager
def live_progress(enabled: bool) -> Iterator[Callable[[Operation], None] | None]:
    """A progress callback that shows the running step (None when --json or not a tty)."""
    if not enabled or not console.is_terminal:
        yield None
        return
    spinner = Spinner("dots", "starting")
    with Live(spinner, console=console, transient=True, refresh_per_second=8):

        def update(op: Operation) -> None:
            current = op.steps[-1] if op.steps else None
            done = sum(1 for s in op.steps if s.state is StepState.DONE)
            text = f"{op.kind.value} {op.group}: {done} steps done"
            if current is not None and current.state is StepState.RUNNING:
                text += f", running {current.name}"
            from haven.engine.progress import latest

            for t in latest()[:3]:
                pct = 100 * t.done / t.total if t.total else 100
                text += f"\n  {t.label}: {pct:.0f}% of {t.total / 2**20:.0f} MiB"
                text += f" at {t.rate / 2**20:.0f} MiB/s" if t.rate else ""
            spinner.update(text=text)

        yield update


def exit_code(op: Operation) -> int:
    """0 when it succeeded; a failed operation's recorded error's code (README table);
    5 for anything else (unfinished, cancelled, or failed before codes were recorded)."""
    if op.state is OperationState.SUCCEEDED:
        return int(ExitCode.OK)
    code = op.exit_code
    if op.state is OperationState.FAILED and code is not None and code is not ExitCode.OK:
        return int(code)
    return int(ExitCode.RUNTIME)
