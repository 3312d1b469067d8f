"""Test failover (a drill): bring the group up at the recovery site inside the test bubble.

Production is left alone: the group's state and placement do not change, warm-standby
replicas are never written (the drill restores into its own ``-drill`` volumes), and no
point is taken or expired. Every network, volume and server the drill creates is
recorded against the operation; ``haven cleanup`` removes exactly those. A second drill
is refused while an earlier one has not been cleaned up.

The drill uses the newest intact point (or the named one); one that proves damaged while
restoring is replaced by the next older intact point unless it was named (exit 6).

Steps: drill.start, drill.bubble (test network), recover.preflight [recover.infra:KIND/NAME
per resource the recovery site lacks: flavors, keypairs, security groups, volume types, role
assignments; never networks, routers or floating IPs], recover.restore:S/D
[recover.next-point, recover.restore again], recover.boot:wave-N, recover.checks,
recover.verify, finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dbos import DBOS

from haven.catalog.store import CreatedResource, Placement
from haven.domain.errors import ConflictError, ValidationError
from haven.domain.groups import GroupState
from haven.domain.operations import OperationKind, OperationState
from haven.domain.plans import DEFAULT_BUBBLE_CIDR, RecoveryPlan
from haven.domain.project import LedgerKind, ProjectSnapshot
from haven.engine import ops, resolve, services
from haven.engine.model import Note, RecoverContext
from haven.engine.ports import NetworkCreation
from haven.engine.steps import engine_step
from haven.engine.workflows import _recovery

DRILL_SUFFIX = "-drill"


@dataclass(frozen=True, slots=True)
class DrillStart:
    ctx: RecoverContext
    bubble: str


def uncleaned_drills(group: str) -> list[str]:
    cat = services.catalog()
    return [
        op.id
        for op in cat.operations(group, limit=200)
        if op.kind is OperationKind.TEST_FAILOVER
        and any(not r.removed for r in cat.created_resources(op.id))
        and op.state is not OperationState.RUNNING
    ]


@engine_step("drill.start")
def _start(op_id: str, plan_name: str, point_id: str | None) -> DrillStart:
    plan: RecoveryPlan = resolve.plan(plan_name)
    ops.begin(op_id, OperationKind.TEST_FAILOVER, plan.group, op_id)
    if plan.test_bubble is None:
        raise ValidationError(f"plans.{plan.name}.test_bubble", "a drill needs a test bubble")
    left = [o for o in uncleaned_drills(plan.group) if o != op_id]
    if left:
        raise ConflictError(f"drill {left[0]} has not been cleaned up: haven cleanup {left[0]}")
    cat = services.catalog()
    g = resolve.group(plan.group)
    state = cat.group_state(g.name)
    if state not in (GroupState.PROTECTED, GroupState.SUSPENDED, GroupState.REVERSE_PROTECTED):
        raise ConflictError(f"group {g.name} is {state.value}: nothing to drill")
    where = cat.placement(g.name) or Placement(g.name, g.source_site, g.target_site, {})
    choice = _recovery.choose_point(g.name, point_id, plan.consistency)
    specs = _recovery.specs_of(choice.point_id)
    bubble = plan.test_bubble.network
    nets = {n.network for spec in specs.values() for n in spec.nics}
    suffix = f"{plan.mappings.name_suffix}{DRILL_SUFFIX}"
    ctx = RecoverContext(
        op_id=op_id,
        kind="test-failover",
        group=g.name,
        plan=plan,
        point_id=choice.point_id,
        point_created_at=choice.created_at,
        source_site=where.active_site,
        target_site=plan.target_site or where.standby_site,
        repository=resolve.repository_name(g),
        specs=specs,
        volumes=choice.volumes,
        network_map={n: bubble for n in nets},
        names={s: f"{s}{suffix}" for s in specs},
        started_at=time.time(),
        reuse_replicas=False,
        volume_suffix=DRILL_SUFFIX,
        lock_owner=op_id,
        name_suffix=suffix,
        bubble=bubble,
        fallback=not point_id,  # a named point is never replaced by another
        skipped=choice.skipped,
        point_why=choice.why,
        project=_recovery.project_of(choice.point_id),
        mappings=plan.mappings,
    )
    return DrillStart(ctx, bubble)


@engine_step("drill.bubble")
def _bubble(op_id: str, ds: DrillStart) -> Note:
    """The isolated network: created (and recorded) if the site can, else it must exist."""
    drv = resolve.driver(ds.ctx.target_site)
    if any(n.name == ds.bubble for n in drv.list_networks()):
        return Note(f"test network {ds.bubble} exists")
    bubble = ds.ctx.plan.test_bubble
    if not isinstance(drv, NetworkCreation) or bubble is None:
        raise ValidationError(
            f"plans.{ds.ctx.plan.name}.test_bubble.network",
            f"network {ds.bubble} does not exist at {ds.ctx.target_site} and the site "
            "cannot create networks",
        )
    cidr = bubble.cidr or _application_cidr(ds.ctx.project) or DEFAULT_BUBBLE_CIDR
    net = drv.create_network(ds.bubble, cidr)
    services.catalog().record_created(CreatedResource(
        op_id, ds.ctx.group, ds.ctx.target_site, LedgerKind.NETWORK, net.id, net.name
    ))  # fmt: skip
    return Note(f"test network {ds.bubble} ({cidr}) created")


def _application_cidr(project: ProjectSnapshot | None) -> str | None:
    """The one subnet the servers' ports use, if the point records exactly one: a bubble
    of that CIDR lets the drill keep their fixed IPs."""
    if project is None:
        return None
    used = {(port.network, port.subnet) for s in project.servers for port in s.ports}
    cidrs = {
        sub.cidr
        for n in project.networks
        for sub in n.subnets
        if (n.name, sub.name) in used and not n.external
    }
    return cidrs.pop() if len(cidrs) == 1 else None


@DBOS.workflow(name="haven.test_failover")
def drill_workflow(op_id: str, plan_name: str, point_id: str | None = None) -> Any:
    try:
        ds = _start(op_id, plan_name, point_id)
        _bubble(op_id, ds)
        rec = _recovery.recover_group(ds.ctx)
        result = {
            "plan": plan_name,
            "point": rec.ctx.point_id,
            "target_site": rec.ctx.target_site,
            "bubble": ds.bubble,
            **rec.result(),
        }
        ops.finish(op_id, {k: str(v) for k, v in result.items()}, release_lock=True)
        return result
    except Exception as exc:
        ops.fail(op_id, exc, release_lock=True)
        raise
