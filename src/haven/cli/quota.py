"""``haven quota show|list|set``: per-project limits on groups, protected bytes and
points (docs/usage-and-quotas.md). A limit is a whole number (``--protected-bytes``: a
size such as ``10GiB``) or ``unlimited``; negative or beyond the largest limit: exit 2
naming the option."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from haven.cli.output import JSON_OPTION, console, escape, guarded, print_json, to_jsonable
from haven.cli.usage import size_text
from haven.domain.errors import ValidationError
from haven.domain.quantities import parse_size

if TYPE_CHECKING:
    from haven.engine.quotas import ProjectQuota, QuotaLine

app = typer.Typer(help="Per-project quotas: groups, protected bytes, points.")

UNLIMITED = "unlimited"


@app.command("show")
@guarded
def show(project: str = typer.Argument(..., help="Keystone project id."),
         as_json: bool = JSON_OPTION) -> None:  # fmt: skip
    """PROJECT's limits and what it uses now."""
    from haven.engine import api

    _render([api.quota(project)], as_json, single=True)


@app.command("list")
@guarded
def list_(as_json: bool = JSON_OPTION) -> None:
    """Every project with a quota or a group."""
    from haven.engine import api

    _render(api.list_quotas(), as_json, single=False)


@app.command("set")
@guarded
def set_(
    project: str = typer.Argument(..., help="Keystone project id."),
    groups: str | None = typer.Option(None, "--groups", help="Groups (or 'unlimited')."),
    protected_bytes: str | None = typer.Option(
        None, "--protected-bytes", help="Protected bytes, e.g. 10GiB (or 'unlimited')."
    ),
    points: str | None = typer.Option(None, "--points", help="Points held (or 'unlimited')."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set some of PROJECT's limits; the others stay."""
    from haven.engine import api
    from haven.engine.quotas import QuotaResource, check_limit

    given = {
        QuotaResource.GROUPS: ("--groups", groups),
        QuotaResource.PROTECTED_BYTES: ("--protected-bytes", protected_bytes),
        QuotaResource.POINTS: ("--points", points),
    }
    changes: dict[QuotaResource, int | None] = {}
    for resource, (option, text) in given.items():
        if text is None:
            continue
        value = _limit(text, option, resource is QuotaResource.PROTECTED_BYTES)
        check_limit(resource, value, option)
        changes[resource] = value
    if not changes:
        raise ValidationError("", "give --groups, --protected-bytes or --points (or several)")
    _render([api.set_quota(project, changes)], as_json, single=True)


def _limit(text: str, option: str, size: bool) -> int | None:
    value = text.strip()
    if value.lower() == UNLIMITED:
        return None
    if value.startswith("-"):
        raise ValidationError(option, f"{value!r} is negative; give 0 or more (or {UNLIMITED})")
    if size:
        try:
            return parse_size(value)
        except ValueError as exc:
            raise ValidationError(option, f"{exc} or {UNLIMITED}") from None
    if not value.isdigit() or len(value) > 18:
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ValidationError(option, f"{shown!r} is not a whole number of at most 18 digits "
                              f"(or {UNLIMITED})")  # fmt: skip
    return int(value)


def _render(found: list[ProjectQuota], as_json: bool, *, single: bool) -> None:
    if as_json:
        data = [to_jsonable(q) for q in found]
        print_json(data[0] if single else data)
        return
    table = Table(title="quotas")
    for col in ("project", "groups", "protected bytes", "points"):
        table.add_column(col, overflow="fold")

    def line(q: QuotaLine, size: bool = False) -> str:
        show = size_text if size else str
        limit = UNLIMITED if q.limit is None else show(q.limit)
        return f"{show(q.in_use)} of {limit}"

    for q in found:
        table.add_row(escape(q.project), line(q.groups), line(q.protected_bytes, True),
                      line(q.points))  # fmt: skip
    console.print(table)
