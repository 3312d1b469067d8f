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

from haven.datamover import backup_volume, prune
from haven.datamover.errors import PruneRefused
from haven.domain.codec import to_data
from haven.domain.errors import (
    ConflictError,
    HavenError,
    IntegrityError,
    NotFoundError,
    ValidationError,
)
from haven.domain.groups import (
    GROUP_STATES,
    GroupState,
    Member,
    MemberKind,
    QuiesceMethod,
)
from haven.domain.inventory import ServerSpec, VolumeInfo
from haven.domain.points import (
    POINT_STATES,
    Consistency,
    PointState,
    PointStats,
    RecoveryPoint,
    VolumePoint,
)
from haven.domain.policies import ConsistencyRequirement, DataPath
from haven.engine import keep, progress, resolve, services
from haven.engine.hooks import run_hooks
from haven.engine.model import (
    BackupOutcome,
    Note,
    ProtectContext,
    SnapshotResult,
    repository_key,
)
from haven.engine.ports import NativeBackups
from haven.sites.base import (
    Capability,
    OnQuiesceFailure,
    PointDisk,
    PointHandle,
    PointRequest,
    QuiesceMember,
    SiteDriver,
)
from haven.sites.errors import SiteError, SiteNotFound


def _request(ctx: ProtectContext, parent: str | None) -> PointRequest:
    """Server members in freeze order, then the servers that volume members are attached
    to while running (each asked for those disks only, never frozen: a volume member is
    quiesced by its hooks or not at all), then the volumes at rest."""
    crash_only = ctx.consistency is ConsistencyRequirement.CRASH
    members = [
        QuiesceMember(
            server_id=ctx.servers[m.ref],
            disks=m.volumes or None,
            quiesce=m.quiesce is QuiesceMethod.AGENT and not ctx.stopped and not crash_only,
        )
        for m in ctx.members
        if m.ref in ctx.servers
    ]
    attached: dict[str, list[str]] = {}
    for v in ctx.volumes:
        if v.live:
            attached.setdefault(v.server_id, []).append(v.target)
    members += [QuiesceMember(sid, tuple(targets), False) for sid, targets in attached.items()]
    at_rest = tuple(v.volume_id for v in ctx.volumes if not v.live)
    on_fail = (
        OnQuiesceFailure.FAIL
        if ctx.consistency is ConsistencyRequirement.APPLICATION
        else OnQuiesceFailure.CRASH_CONSISTENT
    )
    return PointRequest(ctx.point_id, tuple(members), parent, ctx.freeze_timeout_s, on_fail,
                        group=ctx.group, volumes=at_rest)  # fmt: skip


def _hook_server(ctx: ProtectContext, member: Member) -> str | None:
    """The server a member's guest hooks run in: the server itself, or the server a volume
    member is attached to (None: nowhere, e.g. a volume at rest)."""
    if member.kind is MemberKind.SERVER:
        return ctx.servers.get(member.ref)
    at = next((v for v in ctx.volumes if v.ref == member.ref), None)
    return at.server_id if at is not None and at.server_id else None


def _create(ctx: ProtectContext, drv: SiteDriver, parent: str | None) -> PointHandle:
    request = _request(ctx, parent)
    if request.volumes and Capability.STANDALONE_VOLUMES not in drv.capabilities():
        raise ValidationError(
            f"groups.{ctx.group}.members",
            f"site {ctx.active_site} cannot take volumes at rest into a point; protect the "
            "server they are attached to instead",
        )
    return drv.create_point(request)


def snapshot(ctx: ProtectContext) -> SnapshotResult:
    """pre-freeze hooks -> ordered freeze, snapshot, reverse thaw -> post-thaw hooks.

    The hooks are bracketed: every member whose pre-freeze hooks ran gets its post-thaw
    hooks, in reverse order, whatever fails after them (a later member's hook, the
    snapshot itself) — no exception leaves an application quiesced by its own hook."""
    drv = resolve.driver(ctx.active_site)
    members = [(m, sid) for m in ctx.members if (sid := _hook_server(ctx, m)) is not None
               or m.kind is MemberKind.VOLUME]  # fmt: skip
    notes: list[str] = []
    hook_failed: list[str] = []
    quiesced: list[tuple[Member, str | None]] = []  # whose pre-freeze hooks started, in order
    try:
        if not ctx.stopped:
            for m, sid in members:
                quiesced.append((m, sid))
                for h in run_hooks(drv, m.ref, sid or "", m.pre_freeze, "pre-freeze"):
                    notes.append(f"pre-freeze {h.server}: {'ok' if h.ok else h.detail}")
                    if not h.ok and m.quiesce is QuiesceMethod.HOOK:
                        hook_failed.append(m.ref)
        handle = _take_point(ctx, drv)
    except BaseException:
        _post_thaw(drv, quiesced, notes, raise_failures=False)
        raise
    _post_thaw(drv, quiesced, notes, raise_failures=True)
    consistency, reason = _consistency(ctx, handle, hook_failed)
    cat = services.catalog()
    specs = {m.ref: to_data(_member_spec(drv, ctx.servers[m.ref], m)) for m in ctx.members
             if m.ref in ctx.servers}  # fmt: skip
    for host, spec in _host_specs(ctx, drv).items():
        specs[host] = to_data(spec)
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


def _take_point(ctx: ProtectContext, drv: SiteDriver) -> PointHandle:
    with contextlib.suppress(SiteError):  # a crashed earlier attempt may have left it open
        drv.delete_point(ctx.point_id)
    parent = ctx.parent_point if ctx.parent_checkpoint else None
    if ctx.stopped:
        return offline_handle(ctx)
    try:
        return _create(ctx, drv, parent)
    except SiteNotFound:
        if parent is None:
            raise
        return _create(ctx, drv, None)  # checkpoint gone: full read


def _post_thaw(
    drv: SiteDriver,
    quiesced: list[tuple[Member, str | None]],
    notes: list[str],
    raise_failures: bool,
) -> None:
    """Post-thaw hooks of ``quiesced``, in reverse. Every member's hooks run even if an
    earlier one fails; the first failure is raised afterwards when ``raise_failures``
    (on the error path the original error wins and failures are only noted)."""
    first: HavenError | None = None
    for m, sid in reversed(quiesced):
        try:
            for h in run_hooks(drv, m.ref, sid or "", m.post_thaw, "post-thaw"):
                notes.append(f"post-thaw {h.server}: {'ok' if h.ok else h.detail}")
        except HavenError as exc:
            notes.append(f"post-thaw {m.ref}: {exc}")
            first = first or exc
    if first is not None and raise_failures:
        raise first


def _consistency(
    ctx: ProtectContext, handle: PointHandle, hook_failed: list[str]
) -> tuple[Consistency, str]:
    """The site's verdict on the freezes, with the members quiesced by their own hooks
    counted: a point where nothing was frozen is application-consistent when every member
    that needs quiescing (quiesce: hook) was quiesced by its pre-freeze hooks."""
    if ctx.stopped:
        return Consistency.APPLICATION, "servers were shut down for this point"
    consistency, reason = Consistency(handle.consistency), handle.reason or ""
    hooked = [m.ref for m in ctx.members if m.quiesce is QuiesceMethod.HOOK]
    if ctx.consistency is ConsistencyRequirement.CRASH or not hooked:
        return consistency, reason
    if hook_failed:
        return Consistency.CRASH, (
            f"pre-freeze hook of {', '.join(sorted(set(hook_failed)))} failed"
            + (f"; {reason}" if reason else "")
        )
    agent = any(
        m.quiesce is QuiesceMethod.AGENT for m in ctx.members if m.kind is MemberKind.SERVER
    )
    if consistency is Consistency.CRASH and not agent:
        return Consistency.APPLICATION, f"quiesced by the pre-freeze hooks of {', '.join(hooked)}"
    return consistency, reason


def _member_spec(drv: SiteDriver, server_id: str, member: Member) -> ServerSpec:
    """A server member's definition as recovery recreates it: with the disks the point
    protects (all, or those its 'volumes' lists; the others are not recreated)."""
    spec = drv.capture_server(server_id)
    if not member.volumes:
        return spec
    return replace(spec, disks=tuple(d for d in spec.disks if d.target in member.volumes))


def _host_specs(ctx: ProtectContext, drv: SiteDriver) -> dict[str, ServerSpec]:
    """The definitions of the servers volume members are attached to (``attached_to``),
    reduced to those volumes' disks: recovery recreates them around the volumes."""
    keep: dict[str, tuple[str, set[str]]] = {}
    for v in ctx.volumes:
        if v.host:
            keep.setdefault(v.host, (v.server_id, set()))[1].add(v.target)
    out: dict[str, ServerSpec] = {}
    for host, (sid, targets) in keep.items():
        spec = drv.capture_server(sid)
        out[host] = replace(spec, disks=tuple(d for d in spec.disks if d.target in targets))
    return out


def offline_handle(ctx: ProtectContext) -> PointHandle:
    """A point of shut-down servers: their disks are at rest, so the point is the disks
    themselves, read through the site's volume access (hypervisors cannot run backup jobs
    on inactive domains). Unchanged chunks are still not sent: the repository has them.
    Volume members are read at rest too; one attached to a server still running (not a
    host the operation stopped) is refused: it could change while it is read."""
    drv = resolve.driver(ctx.active_site)
    running = [v for v in ctx.volumes if v.live]
    if running:
        v = running[0]
        raise ConflictError(
            f"volume {v.ref} is attached to server {v.server_id} at {ctx.active_site}, which "
            "is running: a planned operation stops the group's servers and the servers "
            "named by 'attached_to' only; declare it there or stop that server first"
        )
    members = [m for m in ctx.members if m.ref in ctx.servers]
    disks = tuple(
        PointDisk(ctx.servers[m.ref], d.target, d.size_bytes, False)
        for m in members
        for d in _member_spec(drv, ctx.servers[m.ref], m).disks
    ) + tuple(PointDisk("", v.name, v.size, False, volume=v.volume_id) for v in ctx.volumes)
    return PointHandle(ctx.point_id, ctx.active_site, None, Consistency.APPLICATION, disks,
                       0.0, "servers were shut down for this point", (), time.time())  # fmt: skip


def _volume_of(drv: SiteDriver, disk: PointDisk) -> VolumeInfo:
    if disk.volume:
        for vol in drv.list_volumes():
            if vol.id == disk.volume:
                return vol
        raise SiteNotFound(f"volume {disk.target} is gone from {drv.name}")
    spec_disk = drv.capture_server(disk.server_id).disk(disk.target)
    if not spec_disk.source:
        raise SiteNotFound(f"disk {disk.target} of {disk.server_id} has no volume to read offline")
    for vol in drv.list_volumes():
        if vol.id == spec_disk.source:
            return vol
    source = spec_disk.source
    return VolumeInfo(source, source.rsplit("/", 1)[-1], spec_disk.size_bytes, spec_disk.format)


def owner(ctx: ProtectContext, disk: PointDisk) -> VolumePoint:
    """Which member a disk of the point belongs to, as a VolumePoint without data yet."""
    for v in ctx.volumes:
        if (disk.volume and disk.volume == v.volume_id) or (
            not disk.volume and v.live and (disk.server_id, disk.target) == (v.server_id, v.target)
        ):
            return VolumePoint(v.ref, v.target if v.host else "", disk.size_bytes, "",
                               kind=MemberKind.VOLUME, host=v.host)  # fmt: skip
    by_id = {sid: name for name, sid in ctx.servers.items()}
    return VolumePoint(by_id.get(disk.server_id, disk.server_id), disk.target, disk.size_bytes, "")


def disk_label(ctx: ProtectContext, disk: PointDisk) -> str:
    return owner(ctx, disk).key


def backup(ctx: ProtectContext, handle: PointHandle, disk: PointDisk) -> BackupOutcome:
    mine = owner(ctx, disk)
    if ctx.data_path is DataPath.CINDER_BACKUP:
        return _native_backup(ctx, handle, disk, mine.member, mine.volume)
    key = repository_key(ctx.group, mine)
    repo = resolve.group_repository(ctx.group, ctx.repository, ctx.bandwidth_limit)
    try:
        done = repo.find_manifest(f"{key}@{ctx.point_id}")
        return BackupOutcome(replace(mine, size=done.size, manifest=done.manifest_id), True)
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
        with drv.open_volume_writer(_volume_of(drv, disk)) as vol:
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
        replace(mine, size=st.size, manifest=result.manifest.manifest_id,
                bytes_read=st.bytes_read, bytes_sent=st.bytes_uploaded)
    )  # fmt: skip


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
    expired, kept = keep.to_expire(ctx.retention, services.catalog().points(ctx.group))
    if not expired:
        return Note(f"kept {kept} points")
    if ctx.data_path is DataPath.CINDER_BACKUP:
        # Cinder keeps a backup while an incremental depends on it, so the chain stays
        # whole; the expired points leave the catalog (a new full chain is a later step)
        cat = services.catalog()
        for p in expired:
            cat.save_point(replace(p, state=PointState.EXPIRED))
            cat.save_point(replace(p, state=PointState.DELETED))
        return Note(f"expired {len(expired)} points, kept {kept} (Cinder keeps the chain)")
    repo = resolve.group_repository(ctx.group, ctx.repository, ctx.bandwidth_limit)
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
            f"expired {len(expired)} points, kept {kept}; garbage not collected: "
            f"{str(exc)[:200]} (haven repo check {ctx.repository})"
        )
    return Note(f"expired {len(expired)} points, kept {kept}; {stats.kept} manifests live")
