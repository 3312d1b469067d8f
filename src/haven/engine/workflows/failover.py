"""Failover: bring a protected group up at its recovery site.

Unplanned (default): from the newest intact committed point (or ``point_id``); a point
whose data proves damaged while restoring is replaced by the next older intact one
(never a named one: exit 6). The source site is not touched at all (it may be gone).
Planned: the source servers are stopped first and a final point is taken with them down
(a child protect workflow under this operation's lock): zero data loss. Failover never
deletes anything at the source.

Steps: failover.start (lock, group -> failing-over) [failover.preflight, failover.stop-source,
child protect] failover.prepare (point, server definitions, mappings) recover.preflight
[recover.infra:KIND/NAME per resource the recovery site lacks] recover.restore:S/D per volume
[recover.next-point and the restores again], recover.boot:wave-N per boot wave (servers of
a wave in parallel, gates), [recover.floating-ips], recover.checks, recover.verify (read
back what the restore did not fetch), failover.commit (group -> failed-over, placement
swapped), finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from dbos import DBOS, SetWorkflowID

from haven.catalog.store import Placement
from haven.domain.errors import ConflictError
from haven.domain.groups import GROUP_STATES, GroupState
from haven.domain.operations import OperationKind
from haven.domain.plans import RecoveryPlan, boot_waves
from haven.engine import infra, ops, recover, resolve, services, traffic
from haven.engine.model import Note, RecoverContext
from haven.engine.steps import engine_step
from haven.engine.workflows import _recovery
from haven.engine.workflows.protect import protect_workflow

_FROM = {GroupState.PROTECTED, GroupState.SUSPENDED}


@dataclass(frozen=True, slots=True)
class Start:
    group: str
    plan: RecoveryPlan
    placement: Placement
    target_site: str
    repository: str
    started_at: float


@engine_step("failover.start")
def _start(op_id: str, plan_name: str, planned: bool = False, point_id: str | None = None) -> Start:
    plan = resolve.plan(plan_name)
    ops.begin(op_id, OperationKind.FAILOVER, plan.group, op_id)
    cat = services.catalog()
    g = resolve.group(plan.group)
    state = cat.group_state(g.name)
    if state is not GroupState.FAILING_OVER:  # (a resumed start has moved it already)
        if state not in _FROM:
            raise ConflictError(f"group {g.name} is {state.value}: it cannot fail over now")
        if not planned:  # no point to recover from (e.g. none the plan accepts): change nothing
            _recovery.choose_point(g.name, point_id, plan.consistency)
        cat.set_group_state(g.name, GROUP_STATES.transition(state, GroupState.FAILING_OVER))
    where = cat.placement(g.name) or Placement(g.name, g.source_site, g.target_site, {})
    target = plan.target_site or where.standby_site
    return Start(g.name, plan, where, target, resolve.repository_name(g), time.time())


@engine_step("failover.stop-source")
def _stop_source(op_id: str, st: Start) -> Note:
    # the final point's operation is recorded now, so that its step log has a parent row
    ops.create_operation(f"{op_id}-final", OperationKind.PROTECT, st.group, {"parent": op_id})
    where = resolve.placement(resolve.group(st.group))
    waves = [[s for stg in wave for s in stg.servers] for wave in reversed(boot_waves(st.plan))]
    return recover.stop_servers(where.active_site, where.servers, waves)


@engine_step("failover.preflight")
def _preflight(op_id: str, st: Start) -> infra.Preflight:
    """A planned failover checks the recovery site against the newest point before it
    stops anything at the source (the final point's own preflight follows)."""
    # any intact point will do: the infrastructure is what is checked (the final point,
    # taken with the servers stopped, is the one recovered and is checked again)
    choice = _recovery.choose_point(st.group, None)
    return infra.preflight(_context(op_id, st, choice, False))


@engine_step("failover.prepare")
def _prepare(op_id: str, st: Start, point_id: str | None, planned: bool) -> RecoverContext:
    """The point (named, the final one, or the newest intact), its definitions, the
    mappings. Only an unplanned failover without a named point may fall back to an
    older intact point when this one proves damaged."""
    choice = _recovery.choose_point(st.group, point_id, st.plan.consistency)
    if planned:
        choice = replace(choice, why="the final point, taken with the servers stopped")
    return _context(op_id, st, choice, not planned and not point_id)


def _context(
    op_id: str, st: Start, choice: _recovery.PointChoice, fallback: bool
) -> RecoverContext:
    maps = st.plan.mappings
    specs = _recovery.specs_of(choice.point_id)
    return RecoverContext(
        op_id=op_id,
        kind="failover",
        group=st.group,
        plan=st.plan,
        point_id=choice.point_id,
        point_created_at=choice.created_at,
        source_site=st.placement.active_site,
        target_site=st.target_site,
        repository=st.repository,
        specs=specs,
        volumes=choice.volumes,
        network_map=dict(maps.networks),
        names={s: f"{s}{maps.name_suffix}" for s in specs},
        started_at=st.started_at,
        lock_owner=op_id,
        name_suffix=maps.name_suffix,
        fallback=fallback,
        skipped=choice.skipped,
        point_why=choice.why,
        project=_recovery.project_of(choice.point_id),
        mappings=maps,
    )


@engine_step("failover.commit")
def _commit(op_id: str, ctx: RecoverContext, servers: dict[str, str]) -> Note:
    cat = services.catalog()
    state = cat.group_state(ctx.group)
    if state is GroupState.FAILING_OVER:
        cat.set_group_state(ctx.group, GROUP_STATES.transition(state, GroupState.FAILED_OVER))
    cat.set_placement(Placement(ctx.group, ctx.target_site, ctx.source_site, servers))
    return Note(f"{ctx.group} now runs at {ctx.target_site}; {ctx.source_site} is the standby")


@engine_step("failover.rollback")
def _rollback(op_id: str, group: str) -> Note:
    cat = services.catalog()
    if cat.group_state(group) is GroupState.FAILING_OVER:
        cat.set_group_state(group, GroupState.PROTECTED)
    return Note("group back to protected (servers that came up stay for inspection)")


@DBOS.workflow(name="haven.failover")
def failover_workflow(
    op_id: str, plan_name: str, planned: bool = False, point_id: str | None = None
) -> dict[str, Any]:
    st: Start | None = None
    try:
        st = _start(op_id, plan_name, planned, point_id)
        final: dict[str, Any] = {}
        if planned:
            _preflight(op_id, st)  # before the source stops: a bad mapping stops nothing
            _stop_source(op_id, st)
            with SetWorkflowID(f"{op_id}-final"):
                final = protect_workflow(f"{op_id}-final", st.group, op_id, True)
            point_id = str(final["point"])
        rec = _recovery.recover_group(_prepare(op_id, st, point_id, planned), planned=planned)
        ctx = rec.ctx  # the point actually used (an older one if the first was damaged)
        if rec.checks.failed:
            raise recover.GateFailed("verification failed: " + ", ".join(rec.checks.failed))
        _commit(op_id, ctx, rec.servers)
        result = {
            "plan": plan_name,
            "point": ctx.point_id,
            "planned": planned,
            "target_site": ctx.target_site,
            **rec.result(),
        }
        if final:
            result["final_point_bytes_sent"] = final.get("bytes_sent", 0)
            result["final_point_replica_bytes_fetched"] = final.get("replica_bytes_fetched", 0)
            traffic.with_children(result, [final])
        ops.finish(op_id, {k: str(v) for k, v in result.items()}, release_lock=True)
        return result
    except Exception as exc:
        if st is not None:
            _rollback(op_id, st.group)
        ops.fail(op_id, exc, release_lock=True)
        raise
