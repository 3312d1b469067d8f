"""The steps of taking a recovery point: snapshot, back up each disk, commit, retention.

Each step is idempotent: the snapshot first drops a leftover driver point of the same id
(an earlier attempt that crashed), a backup reuses a manifest already committed for
``<volume>@<point>``, commit and retention look before they write.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from datetime import UTC, datetime

from haven.datamover import PointTime, RetentionPolicy, backup_volume, prune, select_keep
from haven.datamover.errors import PruneRefused
from haven.domain.codec import to_data
from haven.domain.errors import HavenError, IntegrityError, NotFoundError, ValidationError
from haven.domain.groups import GROUP_STATES, GroupState, QuiesceMethod
from haven.domain.inventory import VolumeInfo
from haven.domain.points import (
    POINT_STATES,
    Consistency,
    PointState,
    PointStats,
    RecoveryPoint,
    VolumePoint,
)
from haven.domain.policies import ConsistencyRequirement, DataPath
from haven.engine import progress, resolve, services
from haven.engine.hooks import run_hooks
from haven.engine.model import BackupOutcome, Note, ProtectContext, SnapshotResult, volume_key
from haven.engine.ports import NativeBackups
from haven.sites.base import (
    OnQuiesceFailure,
    PointDisk,
    PointHandle,
    PointRequest,
    QuiesceMember,
    SiteDriver,
)
from haven.sites.errors import SiteError, SiteNotFound


def _request(ctx: ProtectContext, parent: str | None) -> PointRequest:
    g = resolve.group(ctx.group)
    crash_only = ctx.consistency is ConsistencyRequirement.CRASH
    members = tuple(
        QuiesceMember(
            server_id=ctx.servers[m.ref],
            disks=m.volumes or None,
            quiesce=m.quiesce is QuiesceMethod.AGENT and not ctx.stopped and not crash_only,
        )
        for m in g.members
        if m.ref in ctx.servers
    )
    on_fail = (
        OnQuiesceFailure.FAIL
        if ctx.consistency is ConsistencyRequirement.APPLICATION
        else OnQuiesceFailure.CRASH_CONSISTENT
    )
    return PointRequest(
        ctx.point_id, members, parent, ctx.freeze_timeout_s, on_fail, group=ctx.group
    )


def snapshot(ctx: ProtectContext) -> SnapshotResult:
    """pre-freeze hooks -> ordered freeze, snapshot, reverse thaw -> post-thaw hooks."""
    g = resolve.group(ctx.group)
    drv = resolve.driver(ctx.active_site)
    members = [m for m in g.members if m.ref in ctx.servers]
    notes: list[str] = []
    if not ctx.stopped:
        for m in members:
            for h in run_hooks(drv, m.ref, ctx.servers[m.ref], m.pre_freeze, "pre-freeze"):
                notes.append(f"pre-freeze {h.server}: {'ok' if h.ok else h.detail}")
    with contextlib.suppress(SiteError):  # a crashed earlier attempt may have left it open
        drv.delete_point(ctx.point_id)
    parent = ctx.parent_point if ctx.parent_checkpoint else None
    if ctx.stopped:
        handle = offline_handle(ctx)
    else:
        try:
            handle = drv.create_point(_request(ctx, parent))
        except SiteNotFound:
            if parent is None:
                raise
            handle = drv.create_point(_request(ctx, None))  # checkpoint gone: full read
    if not ctx.stopped:
        for m in reversed(members):
            for h in run_hooks(drv, m.ref, ctx.servers[m.ref], m.post_thaw, "post-thaw"):
                notes.append(f"post-thaw {h.server}: {'ok' if h.ok else h.detail}")
    consistency = Consistency(handle.consistency)
    reason = handle.reason or ""
    if ctx.stopped:
        consistency, reason = Consistency.APPLICATION, "servers were shut down for this point"
    cat = services.catalog()
    by_id = {v: k for k, v in ctx.servers.items()}
    specs = {by_id[sid]: to_data(drv.capture_server(sid)) for sid in ctx.servers.values()}
    cat.save_point_servers(ctx.point_id, specs)
    cat.save_point(
        RecoveryPoint(
            id=ctx.point_id,
            group=ctx.group,
            source_site=ctx.active_site,
            created_at=datetime.fromtimestamp(handle.taken_at or time.time(), UTC),
            consistency=consistency,
            consistency_reason=reason,
            parent=ctx.parent_point,
            stats=PointStats(freeze_window_ms=handle.freeze_window_s * 1000.0),
        )
    )
    return SnapshotResult(
        ctx.point_id, handle, consistency, reason, handle.freeze_window_s * 1000.0, tuple(notes)
    )


def offline_handle(ctx: ProtectContext) -> PointHandle:
    """A point of shut-down servers: their disks are at rest, so the point is the disks
    themselves, read through the site's volume access (hypervisors cannot run backup jobs
    on inactive domains). Unchanged chunks are still not sent: the repository has them."""
    drv = resolve.driver(ctx.active_site)
    disks = tuple(
        PointDisk(sid, d.target, d.size_bytes, False)
        for sid in ctx.servers.values()
        for d in drv.capture_server(sid).disks
    )
    return PointHandle(ctx.point_id, ctx.active_site, None, Consistency.APPLICATION, disks,
                       0.0, "servers were shut down for this point", (), time.time())  # fmt: skip


def _volume_of(drv: SiteDriver, server_id: str, target: str) -> VolumeInfo:
    disk = drv.capture_server(server_id).disk(target)
    if not disk.source:
        raise SiteNotFound(f"disk {target} of {server_id} has no volume to read offline")
    for vol in drv.list_volumes():
        if vol.id == disk.source:
            return vol
    return VolumeInfo(disk.source, disk.source.rsplit("/", 1)[-1], disk.size_bytes, disk.format)


def disk_label(ctx: ProtectContext, disk: PointDisk) -> str:
    by_id = {v: k for k, v in ctx.servers.items()}
    return f"{by_id.get(disk.server_id, disk.server_id)}/{disk.target}"


def backup(ctx: ProtectContext, handle: PointHandle, disk: PointDisk) -> BackupOutcome:
    server, _, target = disk_label(ctx, disk).partition("/")
    if ctx.data_path is DataPath.CINDER_BACKUP:
        return _native_backup(ctx, handle, disk, server, target)
    key = volume_key(ctx.group, server, target)
    repo = resolve.repository(ctx.repository)
    try:
        done = repo.find_manifest(f"{key}@{ctx.point_id}")
        return BackupOutcome(VolumePoint(server, target, done.size, done.manifest_id), True)
    except NotFoundError:
        pass
    parent_m = None
    if ctx.parent_point:
        try:
            parent_m = repo.find_manifest(f"{key}@{ctx.parent_point}")
        except (NotFoundError, IntegrityError):  # gone or damaged: a full point instead
            parent_m = None
    drv = resolve.driver(ctx.active_site)
    if ctx.stopped:  # an offline point: read the volume itself (every chunk; dedup sends few)
        with drv.open_volume_writer(_volume_of(drv, disk.server_id, disk.target)) as vol:
            result = backup_volume(repo, vol, volume=key, point_id=ctx.point_id, parent=parent_m,
                                   progress=progress.reporter(f"backup {key}"))  # fmt: skip
    else:
        with drv.open_point_disk(handle, disk) as src:
            changed = src.changed_extents() if parent_m is not None else None
            result = backup_volume(
                repo, src, volume=key, point_id=ctx.point_id, parent=parent_m, changed=changed,
                progress=progress.reporter(f"backup {key}"),
            )  # fmt: skip
    st = result.stats
    return BackupOutcome(
        VolumePoint(
            server, target, st.size, result.manifest.manifest_id, st.bytes_read, st.bytes_uploaded
        )
    )


def _native_backup(
    ctx: ProtectContext, handle: PointHandle, disk: PointDisk, server: str, target: str
) -> BackupOutcome:
    """Data path cinder-backup: the site's backup service keeps the disk (incremental from
    the parent point's copy of the same disk); the point records the driver's ref."""
    drv = resolve.driver(ctx.active_site)
    if not isinstance(drv, NativeBackups) or ctx.stopped:
        raise ValidationError(
            f"policies.{resolve.group(ctx.group).policy}.data_path",
            f"site {ctx.active_site} cannot keep point data itself (cinder-backup needs an "
            "OpenStack site and running servers); use data_path: repository",
        )
    parent_ref = None
    if ctx.parent_point:
        parent = resolve.point(ctx.group, ctx.parent_point)
        parent_ref = next(
            (v.manifest for v in parent.volumes
             if v.member == server and v.volume == target and v.native),
            None,
        )  # fmt: skip
    copy = drv.backup_point_disk(handle, disk, parent_ref)
    return BackupOutcome(
        VolumePoint(server, target, disk.size_bytes, copy.ref, copy.bytes_read, copy.bytes_sent)
    )


def release(ctx: ProtectContext, handle: PointHandle) -> Note:
    if ctx.stopped:
        return Note("offline point: nothing held at the site")
    resolve.driver(ctx.active_site).release_point(handle)
    return Note("point released at the site (its checkpoint stays for the next incremental)")


def commit(ctx: ProtectContext, volumes: list[VolumePoint]) -> Note:
    cat = services.catalog()
    point = resolve.point(ctx.group, ctx.point_id)
    if point.state is not PointState.COMMITTED:
        POINT_STATES.transition(point.state, PointState.COMMITTED)
        stats = PointStats(
            freeze_window_ms=point.stats.freeze_window_ms,
            bytes_read=sum(v.bytes_read for v in volumes),
            bytes_sent=sum(v.bytes_sent for v in volumes),
            duration_seconds=round(time.time() - ctx.started_at, 3),
        )
        cat.save_point(
            replace(point, state=PointState.COMMITTED, volumes=tuple(volumes), stats=stats)
        )
    state = cat.group_state(ctx.group)
    after = {
        GroupState.UNPROTECTED: GroupState.PROTECTED,
        GroupState.FAILED_OVER: GroupState.REVERSE_PROTECTED,
    }.get(state)
    if after is not None:
        cat.set_group_state(ctx.group, GROUP_STATES.transition(state, after))
    return Note(f"point {ctx.point_id} committed")


def fail_point(ctx: ProtectContext) -> None:
    try:
        point = resolve.point(ctx.group, ctx.point_id)
    except NotFoundError:
        return
    if point.state is PointState.PENDING:
        services.catalog().save_point(replace(point, state=PointState.FAILED))


def retention(ctx: ProtectContext) -> Note:
    """Expire committed points the policy does not keep; never the newest. Their manifests
    go, their site checkpoints go, then unreferenced chunks are collected.

    Damaged points take no place in the policy (it counts intact points). One older than
    every intact point kept can never be chosen for recovery again and expires with
    them; a newer one stays (a repair may make it whole)."""
    r = ctx.retention
    policy = RetentionPolicy(
        keep_last=r.keep_last, keep_hourly=r.hourly, keep_daily=r.daily,
        keep_weekly=r.weekly, keep_monthly=r.monthly,
    )  # fmt: skip
    points = resolve.committed_points(ctx.group)
    keep = select_keep([PointTime(p.id, p.created_at) for p in points], policy)
    if points:
        keep.add(points[-1].id)
    expired = [p for p in points if p.id not in keep]
    oldest_kept = min((p.created_at for p in points if p.id in keep), default=None)
    expired += [
        p
        for p in services.catalog().points(ctx.group)
        if p.state is PointState.DAMAGED and oldest_kept is not None and p.created_at < oldest_kept
    ]
    if not expired:
        return Note(f"kept {len(points)} points")
    if ctx.data_path is DataPath.CINDER_BACKUP:
        # Cinder keeps a backup while an incremental depends on it, so the chain stays
        # whole; the expired points leave the catalog (a new full chain is a later step)
        cat = services.catalog()
        for p in expired:
            cat.save_point(replace(p, state=PointState.EXPIRED))
            cat.save_point(replace(p, state=PointState.DELETED))
        return Note(f"expired {len(expired)} points, kept {len(keep)} (Cinder keeps the chain)")
    repo = resolve.repository(ctx.repository)
    cat = services.catalog()
    for p in expired:
        # one new head without the point's manifests (ids already gone are ignored)
        repo.forget_manifests([v.manifest for v in p.volumes if not v.native])
        with contextlib.suppress(HavenError):  # site unreachable: a checkpoint is only an aid
            resolve.driver(p.source_site).delete_point(p.id)
        cat.save_point(replace(p, state=PointState.EXPIRED))
        cat.save_point(replace(p, state=PointState.DELETED))
    try:
        stats = prune(repo)
    except PruneRefused as exc:
        # a damaged repository: collecting could delete what live points need; the
        # point just taken is committed, the garbage waits for a repair
        return Note(
            f"expired {len(expired)} points, kept {len(keep)}; garbage not collected: "
            f"{str(exc)[:200]} (haven repo check {ctx.repository})"
        )
    return Note(f"expired {len(expired)} points, kept {len(keep)}; {stats.kept} manifests live")
