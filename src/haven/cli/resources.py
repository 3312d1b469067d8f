"""``haven apply``, ``haven get`` and ``haven describe``: declarative configuration.

Specs refuse URLs with credentials in them; a catalog written before that check may
still hold some, so ``get`` and ``describe`` show URLs through
:func:`haven.specs.urls.redacted`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table

from haven.catalog.store import Catalog
from haven.cli.output import JSON_OPTION, console, escape, guarded, print_json
from haven.domain.codec import to_data
from haven.domain.errors import ValidationError
from haven.domain.quantities import format_duration
from haven.domain.resources import Resource, ResourceKind
from haven.domain.sites import Repository, Site
from haven.engine.apply import ApplyResult, ChangeAction
from haven.specs import Spec, load_spec, load_spec_stream
from haven.specs.urls import redacted

# tier is accepted and shown, and acts on nothing: said wherever a policy is described.
# A label rather than a refusal: every spec written so far sets it, the three values are
# the ones issue 15 will give mechanics to, and refusing gold/silver/bronze now would
# break those specs only to accept the same values again later.
TIER_NOTE = (
    "tier: a label for operators and reports only; no mechanics depend on it yet (rpo, "
    "interval, consistency, retention, bandwidth_limit and warm_standby do)"
)


def _kind(text: str) -> ResourceKind:
    try:
        return ResourceKind.parse(text)
    except ValueError as exc:
        raise ValidationError("kind", str(exc)) from None


def _shown(item: Resource) -> Resource:
    """``item`` as it may be displayed: without credentials in its URL."""
    if isinstance(item, Repository):
        return dataclasses.replace(item, url=redacted(item.url))
    if isinstance(item, Site) and item.uri:
        return dataclasses.replace(item, uri=redacted(item.uri))
    return item


def _field_value(path: str, value: Any) -> Any:
    """A changed field's value as it may be displayed (an old catalog row's URL may carry
    credentials)."""
    return redacted(value) if path in ("url", "uri") and isinstance(value, str) else value


def _load(path: str) -> Spec:
    if path == "-":
        return load_spec_stream(sys.stdin.buffer, "<stdin>")
    return load_spec(Path(path))


def apply(
    file: str = typer.Option(..., "-f", "--file", help="Spec YAML file, or - for stdin."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show changes only."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or update resources from a spec file (all or nothing)."""
    from haven.engine.apply import apply_spec

    spec = _load(file)
    catalog = Catalog.open()
    try:
        result = apply_spec(catalog, spec, dry_run=dry_run)
    finally:
        catalog.close()
    _render_apply(result, as_json)


def _render_apply(result: ApplyResult, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "dry_run": result.dry_run,
                "changed": result.changed,
                "changes": [to_data_change(c) for c in result.changes],
            }
        )
        return
    marks = {
        ChangeAction.CREATE: "[green]created[/]",
        ChangeAction.UPDATE: "[yellow]updated[/]",
        ChangeAction.UNCHANGED: "[dim]unchanged[/]",
    }
    for change in result.changes:
        verb = marks[change.action]
        if result.dry_run and change.action is not ChangeAction.UNCHANGED:
            verb = f"would be {verb}"
        console.print(f"{change.kind.value}/{change.name} {verb}", highlight=False)
        for f in change.fields:
            old, new = _field_value(f.path, f.old), _field_value(f.path, f.new)
            console.print(f"  ~ {f.path}: {old!r} -> {new!r}", highlight=False, markup=False)
    if not result.changed:
        console.print("no changes: the catalog already matches the spec")


def to_data_change(change: Any) -> dict[str, Any]:
    return {
        "kind": change.kind.value,
        "name": change.name,
        "action": change.action.value,
        "fields": [
            {"path": f.path, "old": _field_value(f.path, f.old), "new": _field_value(f.path, f.new)}
            for f in change.fields
        ],
    }


_COLUMNS: dict[ResourceKind, list[tuple[str, Any]]] = {
    ResourceKind.SITE: [
        ("DRIVER", lambda r: r.driver.value),
        ("LOCATION", lambda r: r.uri or f"{r.cloud}/{r.region or '-'}"),
    ],
    ResourceKind.REPOSITORY: [("URL", lambda r: r.url), ("SITE", lambda r: r.site or "-")],
    ResourceKind.POLICY: [
        ("RPO", lambda r: format_duration(r.rpo_seconds)),
        ("EVERY", lambda r: format_duration(r.interval_seconds)),
        ("TIER", lambda r: r.tier.value),
        ("CONSISTENCY", lambda r: r.consistency.value),
    ],
    ResourceKind.GROUP: [
        ("SOURCE", lambda r: r.source_site),
        ("TARGET", lambda r: r.target_site),
        ("POLICY", lambda r: r.policy),
        ("MEMBERS", lambda r: len(r.members)),
    ],
    ResourceKind.PLAN: [("GROUP", lambda r: r.group), ("STAGES", lambda r: len(r.stages))],
}


def get(
    kind: str = typer.Argument(..., help="sites, repositories, policies, groups or plans"),
    as_json: bool = JSON_OPTION,
) -> None:
    """List resources of one kind."""
    k = _kind(kind)
    catalog = Catalog.open()
    try:
        items = tuple(_shown(item) for item in catalog.resources().of_kind(k))
    finally:
        catalog.close()
    if as_json:
        print_json([to_data(item) for item in items])
        return
    table = Table(box=None, header_style="bold")
    table.add_column("NAME")
    for title, _ in _COLUMNS[k]:
        table.add_column(title)
    for item in items:
        table.add_row(escape(item.name), *[escape(str(fn(item))) for _, fn in _COLUMNS[k]])
    console.print(table)
    if not items:
        console.print(f"no {k.plural} defined (create some with haven apply -f spec.yaml)")


def describe(
    kind: str = typer.Argument(..., help="sites, repositories, policies, groups or plans"),
    name: str = typer.Argument(...),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one resource in full."""
    k = _kind(kind)
    catalog = Catalog.open()
    try:
        item = _shown(catalog.get(k, name))
        generation = catalog.generations(k, [name]).get(name, 0)
        state = catalog.group_state(name).value if k is ResourceKind.GROUP else None
    finally:
        catalog.close()
    data: dict[str, Any] = {"kind": k.value, "generation": generation, "spec": to_data(item)}
    if state is not None:
        data["state"] = state
    if k is ResourceKind.POLICY:
        data["notes"] = [TIER_NOTE]
    if as_json:
        print_json(data)
    else:
        console.print(yaml.safe_dump(data, sort_keys=False), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(guarded(apply))
    app.command()(guarded(get))
    app.command()(guarded(describe))
