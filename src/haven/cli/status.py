"""``haven status``, ``haven points`` and ``haven serve``."""

from __future__ import annotations

import signal
import threading

import typer
from rich.table import Table

from haven.cli.bounds import finite
from haven.cli.output import JSON_OPTION, console, escape, guarded, print_json, to_jsonable
from haven.domain.codec import to_data
from haven.domain.quantities import MAX_DURATION_SECONDS, format_duration

_STYLE = {"compliant": "green", "breach": "red", "suspended": "yellow", "not-protected": "red"}


@guarded
def status(as_json: bool = JSON_OPTION) -> None:
    """Per group: the newest point's age against the RPO, the last operation."""
    from haven.engine import api

    rows = api.status()
    if as_json:
        print_json([to_jsonable(r) for r in rows])
        return
    table = Table(title="protection status")
    for col in ("group", "state", "sites", "last point", "age / RPO", "compliance", "last op"):
        table.add_column(col, overflow="fold")
    for r in rows:
        age = (
            format_duration(int(r.last_point_age_seconds))
            if r.last_point_age_seconds is not None
            else "never"
        )
        comp = r.compliance.value
        note = " (RPO may grow)" if comp == "suspended" else ""
        last = f"{r.last_operation_kind} {r.last_operation_state}" if r.last_operation else "-"
        if r.busy_with:
            last += f" [busy: {r.busy_with}]"
        table.add_row(
            escape(r.group), escape(r.state), escape(f"{r.active_site} -> {r.standby_site}"),
            escape(f"{r.last_point or '-'} ({r.last_point_consistency or '-'})"),
            f"{age} / {format_duration(r.rpo_seconds)}",
            f"[{_STYLE[comp]}]{comp}[/{_STYLE[comp]}]{note}", escape(last),
        )  # fmt: skip
    console.print(table)


@guarded
def points(group: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Recovery points of GROUP, oldest first; damaged ones with the objects to blame."""
    from haven.engine import api

    found = api.points(group)
    if as_json:
        print_json([to_data(p) for p in found])
        return
    table = Table(title=f"recovery points of {escape(group)}")
    cols = ("id", "state", "created (UTC)", "site", "consistency", "freeze", "read", "sent",
            "damage")  # fmt: skip
    for col in cols:
        table.add_column(col, overflow="fold")
    for p in found:
        fw = p.stats.freeze_window_ms
        state = f"[red]{p.state.value}[/red]" if p.damage else p.state.value
        consistency = p.consistency.value
        consistency += f" ({p.consistency_reason})" if p.consistency_reason else ""
        table.add_row(
            escape(p.id), state, p.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(p.source_site), escape(consistency),
            f"{fw:.0f} ms" if fw is not None else "-", str(p.stats.bytes_read),
            str(p.stats.bytes_sent), escape(p.damage.summary()) if p.damage else "",
        )  # fmt: skip
    console.print(table)


@guarded
def serve(
    duration: float = typer.Option(
        0,
        "--for",
        min=0,
        max=MAX_DURATION_SECONDS,
        callback=finite,
        help="Stop after this many seconds (0: never).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the engine: protect every group on its policy's schedule (Ctrl-C stops)."""
    from haven.domain.operations import Operation
    from haven.engine import scheduler

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if duration:
        threading.Timer(duration, stop.set).start()

    def report(op: Operation) -> None:
        if as_json:
            print_json({"operation": op.id, "group": op.group, "state": op.state.value,
                        "result": dict(op.result)})  # fmt: skip
        else:
            console.print(
                f"{op.group}: {op.kind.value} {op.state.value} {dict(op.result)}", markup=False
            )

    try:
        scheduler.serve(stop, report)
    except KeyboardInterrupt:
        stop.set()


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("points")(points)
    app.command("serve")(serve)
