"""Protect: take one application-consistent recovery point of a group.

Steps (names as in the step log):
  protect.start     take the group lock; resolve sites, servers, parent point, new point id
  protect.snapshot  pre-freeze hooks, ordered freeze, snapshot, reverse thaw, post-thaw hooks;
                    the point is recorded PENDING with its server definitions
  protect.project   sites with projects: what the servers depend on there (networks,
                    routers, security groups, keypairs, flavors, ...), kept with the point
  protect.backup:S/D   one per disk: data into the repository (incremental from the parent)
  protect.release   end the site's hold on the point (its checkpoint stays)
  protect.replica:S/D  warm standby only: apply the point to the replica at the standby site
  protect.commit    the point becomes COMMITTED (visible to recovery); group -> protected
  protect.retention expire points the policy does not keep, collect garbage
  finish / fail     operation outcome; the lock is released (unless a parent owns it)
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Any

from dbos import DBOS

from haven.domain.errors import ConflictError, HavenError
from haven.domain.groups import GroupState
from haven.domain.ids import new_id
from haven.domain.operations import OperationKind
from haven.domain.points import VolumePoint
from haven.domain.policies import DataPath
from haven.engine import (
    capture,
    infra,
    ops,
    quotas,
    replicas,
    resolve,
    services,
    traffic,
    volumes,
)
from haven.engine.model import (
    BackupOutcome,
    Note,
    ProtectContext,
    SnapshotResult,
    volume_key,
)
from haven.engine.replicas import ReplicaOutcome
from haven.engine.steps import engine_step
from haven.sites.base import PointDisk, PointHandle

_ALLOWED = {
    GroupState.UNPROTECTED,
    GroupState.PROTECTED,
    GroupState.FAILED_OVER,  # protecting from the recovery site = reverse protection
    GroupState.REVERSE_PROTECTED,
}
_ALLOWED_AS_CHILD = {GroupState.FAILING_OVER, GroupState.FAILING_BACK, GroupState.SUSPENDED}


@engine_step("protect.start")
def _start(op_id: str, group: str, lock_owner: str, stopped: bool) -> ProtectContext:
    ops.begin(op_id, OperationKind.PROTECT, group, lock_owner)
    cat = services.catalog()
    g = resolve.group(group)
    state = cat.group_state(group)
    allowed = _ALLOWED | (_ALLOWED_AS_CHILD if lock_owner != op_id else set())
    if state not in allowed:
        hint = "; resume it first (haven resume)" if state is GroupState.SUSPENDED else ""
        raise ConflictError(f"group {group} is {state.value}: cannot protect it now{hint}")
    pol = resolve.policy(g.policy)
    where = resolve.placement(g)
    points = resolve.committed_points(group)
    parent = points[-1] if points else None
    members = {k: v for k, v in where.servers.items() if k in g.servers()}
    hosts = {k: v for k, v in where.servers.items() if k in g.hosts()}
    located = volumes.locate(resolve.driver(where.active_site), g, where.active_site,
                             members, hosts)  # fmt: skip
    if lock_owner == op_id:  # a failover's or failback's own points are never refused
        quotas.check_protect(g, where, located)
    return ProtectContext(
        op_id=op_id,
        group=group,
        point_id=new_id("rp"),
        active_site=where.active_site,
        standby_site=where.standby_site,
        repository=resolve.repository_name(g),
        servers=members,
        parent_point=parent.id if parent else None,
        parent_checkpoint=parent is not None and parent.source_site == where.active_site,
        stopped=stopped,
        consistency=pol.consistency,
        freeze_timeout_s=float(pol.freeze_timeout_seconds),
        warm_standby=pol.warm_standby,
        retention=pol.retention,
        started_at=time.time(),
        lock_owner=lock_owner,
        data_path=pol.data_path,
        members=g.members,
        volumes=located,
        bandwidth_limit=pol.bandwidth_limit,
        repository_site=traffic.repository_site(resolve.repository_name(g)),
    )


@engine_step("protect.snapshot")
def _snapshot(op_id: str, ctx: ProtectContext) -> SnapshotResult:
    snap = capture.snapshot(ctx)
    handle: PointHandle = snap.handle  # type: ignore[assignment]
    names = {sid: name for name, sid in ctx.servers.items()}
    calls = tuple(f"{s.action} {names.get(s.server_id, s.server_id)}"
                  + ("" if s.ok else " (failed)") for s in handle.steps)  # fmt: skip
    return replace(snap, quiesce=calls)


@engine_step("protect.project")
def _project(op_id: str, ctx: ProtectContext) -> Note:
    """What the servers depend on at a site with projects (networks, routers, security
    groups, keypairs, flavors, floating IPs...), kept with the point for its recovery."""
    return infra.capture(ctx)


@engine_step("protect.backup")
def _backup(op_id: str, ctx: ProtectContext, handle: PointHandle, disk: PointDisk) -> BackupOutcome:
    return capture.backup(ctx, handle, disk)


@engine_step("protect.release")
def _release(op_id: str, ctx: ProtectContext, handle: PointHandle) -> Note:
    return capture.release(ctx, handle)


@engine_step("protect.replica")
def _replica(op_id: str, ctx: ProtectContext, vol: VolumePoint) -> ReplicaOutcome:
    """Apply the new point to its replica at the standby site (``engine/replicas.py``: the
    group's own disk there when it has one, never a disk in use). Only the chunks that
    differ are fetched and written. A failure here does not fail the point."""
    return replicas.update(ctx, vol, op_id)


@engine_step("protect.commit")
def _commit(op_id: str, ctx: ProtectContext, volumes: list[VolumePoint]) -> Note:
    return capture.commit(ctx, volumes)


@engine_step("protect.retention")
def _retention(op_id: str, ctx: ProtectContext) -> Note:
    return capture.retention(ctx)


@engine_step("protect.abandon")
def _abandon(op_id: str, ctx: ProtectContext) -> Note:
    capture.fail_point(ctx)
    with contextlib.suppress(HavenError):
        resolve.driver(ctx.active_site).delete_point(ctx.point_id)
    return Note(f"point {ctx.point_id} marked failed")


@DBOS.workflow(name="haven.protect")
def protect_workflow(
    op_id: str, group: str, lock_owner: str = "", stopped: bool = False
) -> dict[str, Any]:
    owner = lock_owner or op_id
    ctx: ProtectContext | None = None
    try:
        ctx = _start(op_id, group, owner, stopped)
        snap = _snapshot(op_id, ctx)
        _project(op_id, ctx)
        handle: PointHandle = snap.handle  # type: ignore[assignment]
        vols = [
            _backup(op_id, ctx, handle, d, label=capture.disk_label(ctx, d)).volume
            for d in handle.disks
        ]
        _release(op_id, ctx, handle)
        updated: list[ReplicaOutcome] = []
        if ctx.warm_standby and ctx.data_path is DataPath.REPOSITORY:
            updated = [_replica(op_id, ctx, v, label=v.key) for v in vols]
        _commit(op_id, ctx, vols)
        _retention(op_id, ctx)
        result: dict[str, Any] = {
            "point": ctx.point_id,
            "site": ctx.active_site,
            "consistency": snap.consistency.value,
            "reason": snap.reason,
            "freeze_window_ms": round(snap.freeze_window_ms, 1),
            "quiesce": ", ".join(snap.quiesce),
            **_traffic(ctx, vols, updated),
            "bytes_total": sum(v.size for v in vols),
            "incremental": ctx.parent_point is not None,
            "duration_s": round(time.time() - ctx.started_at, 3),
        }
        ops.finish(op_id, {k: str(v) for k, v in result.items()}, release_lock=not lock_owner)
        return result
    except Exception as exc:
        if ctx is not None:
            _abandon(op_id, ctx)
        ops.fail(op_id, exc, release_lock=not lock_owner)
        raise


def _traffic(
    ctx: ProtectContext, vols: list[VolumePoint], updated: list[ReplicaOutcome]
) -> dict[str, int]:
    """The point's byte figures (``engine/traffic.py``): read at the active site, sent to
    the repository, fetched from it and written into the replicas at the standby site."""
    sent = sum(v.bytes_sent for v in vols)
    to_repo = 0 if ctx.data_path is DataPath.CINDER_BACKUP else sent  # native: the site's
    fetched = sum(r.bytes_fetched for r in updated)
    return {
        "bytes_read": sum(v.bytes_read for v in vols),
        "bytes_sent": sent,
        "replica_bytes_fetched": fetched,
        "replica_bytes_written": sum(r.bytes_written for r in updated),
        traffic.REPOSITORY_BYTES: to_repo + fetched,
        traffic.BETWEEN_SITES: traffic.across(ctx.repository_site, ctx.active_site, to_repo)
        + sum(r.between_sites for r in updated),
    }


def volume_name(group: str, server: str, disk: str) -> str:
    return volume_key(group, server, disk)
