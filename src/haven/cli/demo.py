"""``haven demo``: protect, drill, disaster, failover and failback on the KVM lab."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from haven.cli.output import JSON_OPTION, console, err_console, guarded, print_json


@guarded
def demo(
    home: Path | None = typer.Option(None, "--home", help="Demo state (default $HAVEN_HOME/demo)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the demo guests running."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The whole DR story on the KVM lab (started if needed; needs root)."""
    from haven.catalog.db import haven_home
    from haven_lab.demo import scenario

    where = home or haven_home() / "demo"

    def say(text: str) -> None:
        (err_console if as_json else console).print(f"[cyan]»[/cyan] {text}", highlight=False)

    report = scenario.run(where, say, keep=keep)
    if as_json:
        print_json({"ok": report.ok, "figures": report.figures, "phases": report.phases})
    else:
        table = Table(title="Haven demo report")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in report.figures.items():
            table.add_row(key, str(value))
        console.print(table)
        console.print("[green]demo passed[/green]" if report.ok else "[red]demo failed[/red]")
    if not report.ok:
        raise typer.Exit(5)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
