"""``haven apply``: make the catalog hold what a spec declares, all or nothing.

Semantics (like ``kubectl apply`` without pruning): resources in the spec are created
or updated; resources not in the spec are left alone. The spec is validated against
the merged configuration (catalog overlaid with the spec) before anything is written,
and everything is written in one transaction, so a rejected apply changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from haven.catalog.store import Catalog
from haven.datamover import credential_names
from haven.domain.codec import to_data
from haven.domain.errors import HavenError, ValidationError, ValidationErrors
from haven.domain.resources import ResourceKind, Resources
from haven.domain.sites import Repository, RepositoryKind
from haven.engine import connect, quotas, volumes
from haven.specs import Spec, validate

# where the S3 backend looks for its endpoint when the repository's credentials do not
# give one (haven.datamover.backends.s3.SETTINGS["endpoint"])
S3_ENDPOINT_VARIABLES = ("HAVEN_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


class ChangeAction(Enum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Change:
    kind: ResourceKind
    name: str
    action: ChangeAction
    fields: tuple[FieldChange, ...] = ()


@dataclass(frozen=True)
class ApplyResult:
    changes: tuple[Change, ...]
    dry_run: bool
    generations: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(c.action is not ChangeAction.UNCHANGED for c in self.changes)


def diff_data(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Leaf-level differences between two ``to_data`` trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[FieldChange] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            out += diff_data(old.get(key), new.get(key), sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += diff_data(a, b, f"{path}[{i}]")
        return out
    return [] if old == new else [FieldChange(path, old, new)]


def plan_changes(current: Resources, desired: Resources) -> list[Change]:
    changes: list[Change] = []
    for kind in ResourceKind:
        existing = current.by_name(kind)
        for resource in desired.of_kind(kind):
            old = existing.get(resource.name)
            if old is None:
                changes.append(Change(kind, resource.name, ChangeAction.CREATE))
                continue
            fields = diff_data(to_data(old), to_data(resource))
            action = ChangeAction.UPDATE if fields else ChangeAction.UNCHANGED
            changes.append(Change(kind, resource.name, action, tuple(fields)))
    return changes


def repository_problems(repo: Repository) -> list[ValidationError]:
    """What only the data mover knows about a repository's definition: the credentials
    names its backend takes, and (S3) whether an endpoint can be found at all.

    The endpoint check is as far as apply can see: the spec's ``credentials.endpoint``, or
    one of ``S3_ENDPOINT_VARIABLES`` in the applying process. The process that opens the
    repository (``haven protect``, ``haven serve``) needs it too; if it lacks it, its first
    use fails with exit 2 naming the same field."""
    path = f"repositories.{repo.name}"
    if repo.kind not in (RepositoryKind.S3, RepositoryKind.SWIFT):
        return []  # local and memory: refused with any credentials by the spec checks
    try:
        known = credential_names(repo.url)
    except HavenError as exc:  # the backend's extra is not installed
        return [ValidationError(f"{path}.url", str(exc))]
    problems = [
        ValidationError(
            f"{path}.credentials.{name}",
            f"not a {repo.kind.value} setting; use {', '.join(known)}",
        )
        for name in sorted(repo.credentials)
        if name not in known
    ]
    if (
        repo.kind is RepositoryKind.S3
        and "endpoint" not in repo.credentials
        and not any(os.environ.get(v) for v in S3_ENDPOINT_VARIABLES)
    ):
        problems.append(
            ValidationError(
                f"{path}.credentials.endpoint",
                "an s3:// repository needs its endpoint: give credentials.endpoint "
                f"({{env: VAR}} or {{file: PATH}}) or set {S3_ENDPOINT_VARIABLES[0]}",
            )
        )
    return problems


def attachment_problems(merged: Resources, applying: Resources) -> list[ValidationError]:
    """The one-owner rule as far as the source sites show it now: a volume member attached
    to a server member of its group. A site that does not answer is not waited for (every
    protect checks again, before anything is taken)."""
    sites = merged.by_name(ResourceKind.SITE)
    problems: list[ValidationError] = []
    for g in applying.groups:
        site = sites.get(g.source_site)
        if not g.volume_members() or site is None:
            continue
        try:
            problems += volumes.owner_problems(connect.driver_for(site), g)
        except HavenError:
            continue
    return problems


def apply_spec(catalog: Catalog, spec: Spec, dry_run: bool = False) -> ApplyResult:
    """Validate ``spec`` against the catalog and write it in one transaction."""
    with catalog.transaction() as session:
        current = catalog.resources(session)
        problems: list[ValidationError] = []
        try:
            validate(current.overlay(spec.resources), applying=spec.resources)
        except ValidationErrors as exc:
            problems += exc.errors
        for repo in spec.resources.repositories:
            problems += repository_problems(repo)
        if not problems:
            problems += attachment_problems(current.overlay(spec.resources), spec.resources)
        if problems:
            raise ValidationErrors(problems)
        quotas.check_apply(catalog, current, spec.resources)  # a project's groups quota
        changes = plan_changes(current, spec.resources)
        if not dry_run and any(c.action is not ChangeAction.UNCHANGED for c in changes):
            catalog.write_resources(session, spec.resources)
    return ApplyResult(tuple(changes), dry_run)
