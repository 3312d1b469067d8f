"""Project infrastructure in the workflows (sites whose servers live in a project).

Protect captures it with each point (``capture``: step ``protect.project``). Recovery
(failover, drill, failback) first runs the preflight (``preflight``: step
``recover.preflight``): the point's snapshot, the mappings and the recovery site's survey
give the plan of what to create (``haven.engine.infra_plan``), or every lack at once
(PreflightFailed, exit 2) before anything is created. Then one step per resource to create
(``ensure``: ``recover.infra:<kind>/<name>``), and after the boot waves the floating IPs
(``attach_floating_ips``: ``recover.floating-ips``). Everything a site creates goes into the
catalog's ledger before the step returns; drill cleanup removes exactly that.

Idempotence: the driver finds each resource (and its parts) by name before it creates one;
the engine asks only for what the preflight found missing, so whatever the driver returns
is this operation's, also after a crash between creating and recording.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from haven.catalog.store import CreatedResource
from haven.domain.errors import ValidationError, ValidationErrors
from haven.domain.project import Created, InfraItem, InfraPlan, Lack
from haven.engine import resolve, services
from haven.engine.infra_plan import Target, plan_infrastructure, survey_request
from haven.engine.model import Note, ProtectContext, RecoverContext
from haven.engine.ports import ProjectInfrastructure, ProjectServers


class PreflightFailed(ValidationErrors):
    """The recovery site lacks what the plan needs; nothing was created. Each problem names
    the plan field that leads to it and the fix."""

    def __init__(self, site: str, lacks: list[Lack]) -> None:
        super().__init__([ValidationError(x.path, x.message) for x in lacks])
        self.args = (
            f"preflight at {site}: {len(lacks)} problem(s), nothing was created\n" + str(self),
        )


def capture(ctx: ProtectContext) -> Note:
    drv = resolve.driver(ctx.active_site)
    if not isinstance(drv, ProjectInfrastructure):
        return Note(f"{ctx.active_site} has no project infrastructure to capture")
    snap = drv.capture_project(ctx.servers)
    services.catalog().save_point_project(ctx.point_id, snap)
    parts = {
        "networks": len(snap.networks),
        "routers": len(snap.routers),
        "security groups": len(snap.security_groups),
        "keypairs": len(snap.keypairs),
        "flavors": len(snap.flavors),
        "floating IPs": len(snap.floating_ips),
    }
    return Note("project captured: " + ", ".join(f"{v} {k}" for k, v in parts.items()))


@dataclass(frozen=True, slots=True)
class Preflight:
    plan: InfraPlan | None
    why_none: str = ""

    def detail(self) -> str:
        if self.plan is None:
            return self.why_none
        p = self.plan
        text = f"{len(p.items)} to create" + (
            f" ({', '.join(i.label for i in p.items)})" if p.items else ""
        )
        text += f"; {len(p.used)} used as they are"
        return text + ("; " + "; ".join(p.notes) if p.notes else "")


def preflight(ctx: RecoverContext) -> Preflight:
    if ctx.project is None:
        return Preflight(None, f"point {ctx.point_id} records no project infrastructure")
    drv = resolve.driver(ctx.target_site)
    if not isinstance(drv, ProjectInfrastructure):
        return Preflight(None, f"{ctx.target_site} has no project infrastructure: servers only")
    t = Target(
        ctx.target_site,
        ctx.mappings,
        f"plans.{ctx.plan.name}.mappings",
        ctx.names,
        ctx.bubble,
        ctx.op_id,
        frozenset(ctx.existing_servers),  # failback onto home servers kept in place
    )
    survey = drv.survey(survey_request(ctx.project, t))
    plan, lacks = plan_infrastructure(ctx.project, survey, t)
    if lacks:
        raise PreflightFailed(ctx.target_site, lacks)
    return Preflight(plan)


@dataclass(frozen=True, slots=True)
class Ensured:
    label: str
    created: tuple[Created, ...]

    def detail(self) -> str:
        return f"{self.label}: " + (
            ", ".join(f"{c.kind.value} {c.name}" for c in self.created) or "nothing left to create"
        )


def ensure(ctx: RecoverContext, item: InfraItem) -> Ensured:
    drv = resolve.driver(ctx.target_site)
    if not isinstance(drv, ProjectInfrastructure):
        raise ValidationError(f"sites.{ctx.target_site}.driver", "cannot create infrastructure")
    created = drv.ensure(item)
    record(ctx, created)
    return Ensured(item.label, created)


@dataclass(frozen=True, slots=True)
class FloatingIps:
    lines: tuple[str, ...]
    done_at: float

    def detail(self) -> str:
        return "; ".join(self.lines) or "no floating IP to attach"


def attach_floating_ips(ctx: RecoverContext, servers: dict[str, str], now: float) -> FloatingIps:
    reqs = ctx.infra.floating_ips if ctx.infra is not None else ()
    if not reqs:
        return FloatingIps((), now)
    drv = resolve.driver(ctx.target_site)
    if not isinstance(drv, ProjectServers):
        raise ValidationError(f"sites.{ctx.target_site}.driver", "cannot attach floating IPs")
    lines = []
    for req in reqs:
        res = drv.attach_floating_ip(servers[req.server], req)
        record(ctx, res.created)
        how = "kept" if res.kept else f"was {req.address}"
        lines.append(f"{res.address} -> {ctx.names.get(req.server, req.server)} ({how})")
    return FloatingIps(tuple(lines), time.time())


def record(ctx: RecoverContext, created: Iterable[Created]) -> None:
    cat = services.catalog()
    for c in created:
        cat.record_created(
            CreatedResource(ctx.op_id, ctx.group, ctx.target_site, c.kind, c.ref, c.name)
        )


def created_summary(op_id: str) -> str:
    """What an operation created, by kind and name, in creation order."""
    rows = services.catalog().created_resources(op_id)
    return ", ".join(f"{r.kind.value}/{r.name}" for r in rows)


__all__ = [
    "Ensured",
    "FloatingIps",
    "Preflight",
    "PreflightFailed",
    "attach_floating_ips",
    "capture",
    "created_summary",
    "ensure",
    "preflight",
    "record",
]
