"""Resources through a scope: listing, reading, applying and deleting groups and plans
on behalf of one project (the API), with the same validation as ``haven apply``.

Group names stay global (the catalog's primary key, the reference every plan, point,
operation, lock and durable workflow carries): a project asking for a name another
project holds gets a 409 that says the name is taken and nothing about whose it is.
Qualifying names per project would have to touch every one of those references and
every workflow's arguments; a taken name costs the tenant a rename, and the only thing
the refusal reveals is that the name exists (as a global namespace of e.g. DNS names
or Swift containers per account would).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from haven.domain.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from haven.domain.groups import HookWhere, ProtectionGroup
from haven.domain.plans import RecoveryPlan
from haven.domain.resources import Resource, ResourceKind, Resources
from haven.engine import scope as scopes
from haven.engine import services
from haven.engine.apply import ApplyResult, apply_spec
from haven.engine.scope import Scope
from haven.specs import Spec, parse_spec

OPERATOR_KINDS = (ResourceKind.SITE, ResourceKind.REPOSITORY, ResourceKind.POLICY)


def listed(kind: ResourceKind, scope: Scope) -> list[Resource]:
    everything = services.catalog().resources().of_kind(kind)
    if scope.all_projects or kind in OPERATOR_KINDS:
        return list(everything)
    mine = set(scopes.visible_groups(scope) or ())
    if kind is ResourceKind.GROUP:
        return [g for g in everything if g.name in mine]
    return [p for p in everything if isinstance(p, RecoveryPlan) and p.group in mine]


def get(kind: ResourceKind, name: str, scope: Scope) -> Resource:
    if kind is ResourceKind.GROUP:
        return scopes.group(scope, name)
    if kind is ResourceKind.PLAN:
        return scopes.plan(scope, name)
    resource: Resource = services.catalog().get(kind, name)
    return resource


def delete(kind: ResourceKind, name: str, scope: Scope) -> None:
    if kind is ResourceKind.GROUP:
        scopes.group(scope, name)
        services.catalog().delete_group(name)
    elif kind is ResourceKind.PLAN:
        scopes.plan(scope, name)
        services.catalog().delete_plan(name)
    else:
        raise ValidationError(kind.value, f"deleting a {kind.value} is not offered yet")


def apply(data: Any, scope: Scope, dry_run: bool = False) -> ApplyResult:
    """``haven apply``'s validation of the spec ``data`` (a parsed document), then, for a
    project scope, the tenancy rules: groups and plans only, groups forced into the
    caller's project, no host-side hooks, names held by other projects refused (409)."""
    spec = parse_spec(data)
    if not scope.all_projects:
        spec = _tenant_spec(spec, scope)
    return apply_spec(services.catalog(), spec, dry_run=dry_run)


def _tenant_spec(spec: Spec, scope: Scope) -> Spec:
    r = spec.resources
    operator = [k.plural for k in OPERATOR_KINDS if r.of_kind(k)]
    if operator:
        raise ForbiddenError(
            f"{', '.join(operator)}: defined by the operator (admin role); a project's spec "
            "holds groups and plans only"
        )
    groups = tuple(_tenant_group(g, scope) for g in r.groups)
    catalog = services.catalog()
    existing = catalog.resources()
    owners = {g.name: g.project for g in existing.groups}
    for g in groups:
        if g.name in owners and owners[g.name] != scope.project:
            raise ConflictError(f"group name {g.name!r} is taken; choose another name")
    spec_groups = {g.name for g in groups}
    plan_groups = {p.name: p.group for p in existing.plans}
    for p in r.plans:
        held_by = plan_groups.get(p.name)
        if held_by is not None and owners.get(held_by) != scope.project:
            raise ConflictError(f"plan name {p.name!r} is taken; choose another name")
        if p.group not in spec_groups:
            try:
                scopes.group(scope, p.group)
            except NotFoundError:
                raise ValidationError(
                    f"plans.{p.name}.group", f"no group named {p.group!r} in your project"
                ) from None
    return Spec(replace(r, groups=groups), spec.raw)


def _tenant_group(g: ProtectionGroup, scope: Scope) -> ProtectionGroup:
    if g.project is not None and g.project != scope.project:
        raise ValidationError(
            f"groups.{g.name}.project",
            f"must be your project {scope.project} (or left out: it is set for you)",
        )
    for m in g.members:
        if any(h.where is HookWhere.HOST for h in m.pre_freeze + m.post_thaw):
            raise ForbiddenError(
                f"groups.{g.name}.members.{m.ref}: hooks with where: host run on the Haven "
                "host and are admin-only; use where: guest"
            )
    return replace(g, project=scope.project)


__all__ = ["Resources", "apply", "delete", "get", "listed"]
