"""Failback: return a failed-over group to its original site.

1. Reverse protection (if not done yet): a point of the group as it runs at the recovery
   site. Its manifests increment from the last common point (the one failed over from),
   so only chunks changed since then travel to the repository.
2. Planned failover back: the recovered servers are stopped, a final point is taken with
   them down (zero data loss), and the original site's servers get their disks rewritten
   in place: restore into the existing disks writes only the chunks that differ (the
   original disks still hold the common point). Servers that no longer exist at the
   original site (it was destroyed) are recreated there from the point.
3. Roles swap back in the catalog: the original site is active again, the group protected.

Steps: failback.start, [child protect -rev], failback.switch, failback.stop-recovered,
child protect -final, failback.prepare (stops originals still running), recover.restore:S/D,
recover.boot:wave-N, recover.checks, recover.verify, failback.commit, finish. The final
point is never replaced: damage in it fails the failback (exit 6, back to
reverse-protected).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dbos import DBOS, SetWorkflowID

from haven.catalog.store import Placement
from haven.domain.errors import ConflictError, HavenError
from haven.domain.groups import GROUP_STATES, GroupState, MemberKind
from haven.domain.inventory import PowerState, VolumeInfo
from haven.domain.operations import OperationKind
from haven.domain.plans import Mappings, RecoveryPlan, boot_waves
from haven.engine import ops, recover, resolve, services, traffic, volumes
from haven.engine.model import Note, RecoverContext
from haven.engine.steps import engine_step
from haven.engine.workflows import _recovery
from haven.engine.workflows.protect import protect_workflow
from haven.sites.base import Capability, StopOutcome


@dataclass(frozen=True, slots=True)
class FbStart:
    group: str
    plan: RecoveryPlan
    placement: Placement  # active: the recovery site where the group runs now
    home_site: str
    repository: str
    needs_reverse: bool
    started_at: float


@engine_step("failback.start")
def _start(op_id: str, plan_name: str) -> FbStart:
    plan = resolve.plan(plan_name)
    ops.begin(op_id, OperationKind.FAILBACK, plan.group, op_id)
    cat = services.catalog()
    state = cat.group_state(plan.group)
    ok = (GroupState.FAILED_OVER, GroupState.REVERSE_PROTECTED, GroupState.FAILING_BACK)
    if state not in ok:
        raise ConflictError(f"group {plan.group} is {state.value}: nothing to fail back")
    where = cat.placement(plan.group)
    if where is None:
        raise ConflictError(f"group {plan.group} has no recorded placement at a recovery site")
    for suffix in ("rev", "final"):
        ops.create_operation(f"{op_id}-{suffix}", OperationKind.PROTECT, plan.group,
                             {"parent": op_id})  # fmt: skip
    g = resolve.group(plan.group)
    return FbStart(plan.group, plan, where, where.standby_site, resolve.repository_name(g),
                   state is GroupState.FAILED_OVER, time.time())  # fmt: skip


@engine_step("failback.switch")
def _switch(op_id: str, group: str) -> Note:
    cat = services.catalog()
    state = cat.group_state(group)
    if state is not GroupState.FAILING_BACK:
        cat.set_group_state(group, GROUP_STATES.transition(state, GroupState.FAILING_BACK))
    return Note("group failing back")


def _order(plan: RecoveryPlan) -> list[list[str]]:
    return [[s for stg in wave for s in stg.servers] for wave in reversed(boot_waves(plan))]


@engine_step("failback.stop-recovered")
def _stop_recovered(op_id: str, fb: FbStart) -> Note:
    return recover.stop_servers(fb.placement.active_site, fb.placement.servers, _order(fb.plan))


@engine_step("failback.prepare")
def _prepare(op_id: str, fb: FbStart, point_id: str) -> RecoverContext:
    """Find the original servers still at the home site; stop them (never two live copies)
    and target their own disks, which still hold the common point. A site that cannot
    restore into a server's disks in place (no VOLUME_OVERWRITE: OpenStack, whose re-image
    of a once-snapshotted volume would be shadowed) gets the stale home servers removed,
    their volumes kept, and the application restored onto new volumes and servers."""
    choice = _recovery.choose_point(fb.group, point_id)  # the final point: never replaced
    why = "the final point, taken with the recovered servers stopped"
    specs = _recovery.specs_of(choice.point_id)
    drv = resolve.driver(fb.home_site)
    in_place = Capability.VOLUME_OVERWRITE in drv.capabilities()
    existing: dict[str, str] = {}
    disks: dict[str, VolumeInfo] = {}
    notes: list[str] = []
    try:
        home = {s.name: s for s in drv.list_servers()}
        vols = {v.id: v for v in drv.list_volumes()}
    except HavenError:
        home, vols = {}, {}
    for name in specs:
        info = home.get(name)
        if info is None:
            continue
        if info.state is PowerState.RUNNING:
            outcome = drv.stop_server(info.id)
            forced = " (forced)" if outcome is StopOutcome.FORCED else ""
            notes.append(f"stopped {name} at {fb.home_site}{forced}")
        if not in_place:
            drv.undefine_server(info.id)  # its volumes stay: the fallback if home misbehaves
            continue
        existing[name] = info.id
        for d in info.spec.disks:
            if d.source:
                disks[f"{name}/{d.target}"] = vols.get(d.source) or VolumeInfo(
                    d.source, d.source.rsplit("/", 1)[-1], d.size_bytes, d.format
                )
    if in_place:  # volume members: back into their home volumes, which hold the common point
        g = resolve.group(fb.group)
        for vp in choice.volumes:
            if vp.kind is MemberKind.VOLUME:
                home_vol = volumes.find(drv, g, vp.member, fb.home_site)
                if home_vol is not None:
                    disks[vp.key] = home_vol
    return RecoverContext(
        op_id=op_id,
        kind="failback",
        group=fb.group,
        plan=fb.plan,
        point_id=choice.point_id,
        point_created_at=choice.created_at,
        source_site=fb.placement.active_site,
        target_site=fb.home_site,
        repository=fb.repository,
        specs=specs,
        volumes=choice.volumes,
        # home networks: the plan maps home -> recovery names; failback maps them back
        network_map={dst: src for src, dst in fb.plan.mappings.networks.items()},
        names={s: s for s in specs},
        started_at=fb.started_at,
        existing_servers=existing,
        existing_volumes=disks,
        lock_owner=op_id,
        notes=tuple(notes),
        point_why=why,
        project=_recovery.project_of(choice.point_id),
        mappings=inverse(fb.plan.mappings),
    )


def inverse(m: Mappings) -> Mappings:
    """The plan's mappings for the way home: recovery-site names back to home names. An
    ``ips`` mapping is not inverted: home gets the addresses the servers had at the
    recovery site (the final point's)."""

    def back(d: dict[str, str]) -> dict[str, str]:
        return {dst: src for src, dst in d.items()}

    return Mappings(networks=back(m.networks), subnets=back(m.subnets), flavors=back(m.flavors),
                    keypairs=back(m.keypairs), security_groups=back(m.security_groups))  # fmt: skip


@engine_step("failback.commit")
def _commit(op_id: str, ctx: RecoverContext, servers: dict[str, str]) -> Note:
    cat = services.catalog()
    state = cat.group_state(ctx.group)
    if state is GroupState.FAILING_BACK:
        cat.set_group_state(ctx.group, GROUP_STATES.transition(state, GroupState.PROTECTED))
    cat.set_placement(Placement(ctx.group, ctx.target_site, ctx.source_site, servers))
    return Note(f"{ctx.group} runs at {ctx.target_site} again, protected to {ctx.source_site}")


@engine_step("failback.rollback")
def _rollback(op_id: str, group: str) -> Note:
    cat = services.catalog()
    if cat.group_state(group) is GroupState.FAILING_BACK:
        cat.set_group_state(group, GroupState.REVERSE_PROTECTED)
    return Note("group left reverse-protected at the recovery site")


@DBOS.workflow(name="haven.failback")
def failback_workflow(op_id: str, plan_name: str) -> dict[str, Any]:
    fb: FbStart | None = None
    try:
        fb = _start(op_id, plan_name)
        rev: dict[str, Any] = {}
        if fb.needs_reverse:
            with SetWorkflowID(f"{op_id}-rev"):
                rev = protect_workflow(f"{op_id}-rev", fb.group, op_id, False)
        _switch(op_id, fb.group)
        _stop_recovered(op_id, fb)
        with SetWorkflowID(f"{op_id}-final"):
            final = protect_workflow(f"{op_id}-final", fb.group, op_id, True)
        rec = _recovery.recover_group(_prepare(op_id, fb, str(final["point"])), planned=True)
        ctx = rec.ctx
        if rec.checks.failed:
            raise recover.GateFailed("verification failed: " + ", ".join(rec.checks.failed))
        _commit(op_id, ctx, rec.servers)
        result = {
            "plan": plan_name,
            "point": ctx.point_id,
            "home_site": fb.home_site,
            "reverse_bytes_read": rev.get("bytes_read", 0),
            "reverse_bytes_sent": rev.get("bytes_sent", 0),
            "reverse_replica_bytes_fetched": rev.get("replica_bytes_fetched", 0),
            "final_bytes_sent": final.get("bytes_sent", 0),
            "final_replica_bytes_fetched": final.get("replica_bytes_fetched", 0),
            "bytes_total": final.get("bytes_total", 0),
            "reused_servers": len(ctx.existing_servers),
            "duration_s": round(time.time() - fb.started_at, 3),
            **rec.result(),
        }
        traffic.with_children(result, [rev, final])  # every byte of the failback's points too
        ops.finish(op_id, {k: str(v) for k, v in result.items()}, release_lock=True)
        return result
    except Exception as exc:
        if fb is not None:
            _rollback(op_id, fb.group)
        ops.fail(op_id, exc, release_lock=True)
        raise
