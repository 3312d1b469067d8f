"""``haven usage``: per project, what chargeback needs over a window (engine/usage.py
states the rules; docs/usage-and-quotas.md explains them).

Times are ISO 8601 (``2026-11-01``, ``2026-11-01T12:00:00Z``); one without a zone is
UTC. Default window: from the start of this month (UTC) to now. ``--json`` prints one
document whose field names carry their units (``_bytes``, ``_gb_hours``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.table import Table

from haven.cli.output import JSON_OPTION, console, escape, guarded, print_json, to_jsonable
from haven.domain.errors import ValidationError

OPERATOR = "-"  # the operator's own groups (no project), in tables and for --project
ISO_HELP = "an ISO 8601 time, e.g. 2026-11-01 or 2026-11-01T12:00:00Z (no zone: UTC)"


def parse_time(value: str, option: str) -> datetime:
    """``value`` as an aware datetime (no zone: UTC); ValidationError naming ``option``."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ValidationError(option, f"{shown!r} is not {ISO_HELP}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


@guarded
def usage(
    start: str | None = typer.Option(None, "--start", help="From (default: this month)."),
    end: str | None = typer.Option(None, "--end", help="Until, excluded (default: now)."),
    project: str | None = typer.Option(
        None, "--project", "-p", help=f"Only this project ('{OPERATOR}': the operator's groups)."
    ),
    no_stored: bool = typer.Option(
        False, "--no-stored", help="Skip stored bytes (they open every repository)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Per project: protected GB-hours, stored bytes, bytes between sites, points taken,
    drills, failovers and failbacks run."""
    from haven.engine import api
    from haven.engine import usage as rules

    now = datetime.now(UTC)
    until = parse_time(end, "--end") if end is not None else now
    since = (
        parse_time(start, "--start")
        if start is not None
        else until.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    )
    since, until = rules.check_window(since, until, ("--start", "--end"))
    projects: set[str | None] | None = None
    if project is not None:
        projects = {None if project == OPERATOR else _project(project)}
    report = api.usage(since, until, projects=projects, stored=not no_stored)
    if as_json:
        print_json(to_jsonable(report))
        return
    title = f"usage {since.isoformat()} .. {until.isoformat()}"
    table = Table(title=title)
    cols = ("project", "groups", "protected GB-h", "stored", "between sites", "to/from repo",
            "points", "drills (failed)", "failovers (failed)", "failbacks (failed)")  # fmt: skip
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in report.projects:
        table.add_row(
            escape(r.project or OPERATOR), str(r.groups), f"{r.protected_gb_hours:.3f}",
            "-" if r.stored_bytes is None else size_text(r.stored_bytes),
            size_text(r.bytes_between_sites), size_text(r.repository_bytes), str(r.points_taken),
            f"{r.drills_run} ({r.drills_failed})", f"{r.failovers_run} ({r.failovers_failed})",
            f"{r.failbacks_run} ({r.failbacks_failed})",
        )  # fmt: skip
    console.print(table)
    if report.stored_at is not None:
        console.print(f"stored bytes: measured now ({report.stored_at.isoformat()}), shared "
                      "chunks split equally among the points using them", markup=False)  # fmt: skip
        for repo in report.repositories:
            part = f"{repo.repository} (project {repo.project or '-'})"
            if repo.unreadable:
                console.print(f"  {part}: not measured: {repo.unreadable}", markup=False)
                continue
            console.print(
                f"  {part}: packs {size_text(repo.pack_bytes)}, charged "
                f"{size_text(repo.attributed_bytes)}, not in the catalog "
                f"{size_text(repo.unattributed_bytes)}"
                + (f", {repo.missing_chunks} chunks missing" if repo.missing_chunks else ""),
                markup=False,
            )


def _project(value: str) -> str:
    from haven.engine import quotas

    return quotas.valid_project(value, "--project")


def size_text(n: int) -> str:
    """Bytes for tables: binary units, three significant digits."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def register(app: typer.Typer) -> None:
    app.command("usage")(usage)
