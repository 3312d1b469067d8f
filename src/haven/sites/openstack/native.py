"""OpenStack-native protection and recovery of a group: Cinder snapshots and backups.

protect: capture the inventory by name and content, take a group snapshot of every
volume (per-volume fallback), back each snapshot up (incremental after the first point)
into the recovery site's backup store, export the backup records.

recover (failover, migration or drill): preflight and create what the target lacks (or a
test bubble for a drill), import the backup chains, restore volumes, boot the servers in
plan order from their volumes on mapped networks. A drill's ledger lets cleanup remove
exactly what the drill created.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from openstack.connection import Connection

from haven.domain.points import Consistency
from haven.sites.base import OnQuiesceFailure, PointRequest, QuiesceMember
from haven.sites.openstack import (
    backups,
    floating,
    identity,
    inventory,
    quiesce,
    recovery,
    snapshots,
)
from haven.sites.openstack.connection import wait_status
from haven.sites.openstack.model import AppInventory


@dataclass(frozen=True, slots=True)
class ProtectedPoint:
    point_id: str
    inventory: AppInventory
    snapset: snapshots.SnapshotSet
    backups: dict[str, backups.VolumeBackup]  # by source volume id
    duration_s: float
    consistency: Consistency = Consistency.CRASH
    consistency_reason: str | None = None  # why not application-consistent
    freeze_window_s: float = 0.0


def protect(
    conn: Connection,
    site: str,
    server_ids: Sequence[str],
    point_id: str,
    group_name: str,
    previous: ProtectedPoint | None = None,
    prefer_group: bool = True,
    keep_snapshots: bool = False,
    quiesce_config: quiesce.QuiesceConfig | None = None,
    freeze_timeout_s: float = 2.0,
    on_quiesce_failure: OnQuiesceFailure = OnQuiesceFailure.CRASH_CONSISTENT,
) -> ProtectedPoint:
    """Take a point, as consistent as the site allows (haven.sites.openstack.quiesce; the
    servers freeze in ``server_ids`` order). The snapshots are deleted once their backups
    exist (``keep_snapshots`` False): the backups carry the data and the incremental chain,
    and on NFS-like drivers a snapshot left in place turns the next snapshot into a qcow2
    layer with a backing file, which Cinder's image safety check (since the 2024 qcow2
    fixes) refuses to back up."""
    t0 = time.monotonic()
    inv = inventory.capture(conn, site, server_ids)
    volume_ids = [v.source_id for s in inv.servers for v in s.volumes]
    request = PointRequest(
        point_id,
        tuple(QuiesceMember(sid) for sid in server_ids),
        freeze_timeout_s=freeze_timeout_s,
        on_quiesce_failure=on_quiesce_failure,
    )
    qp = quiesce.take_point(
        conn,
        request,
        volume_ids,
        lambda: snapshots.snapshot_volumes(conn, point_id, volume_ids, group_name, prefer_group),
        quiesce_config,
    )
    snapset = qp.snapset
    prev = previous.backups if previous else None
    bk = backups.backup_snapshots(conn, snapset, prev)
    if not keep_snapshots:
        snapshots.delete_snapshot_set(conn, snapset)
    return ProtectedPoint(point_id, inv, snapset, bk, time.monotonic() - t0,
                          qp.consistency, qp.reason, qp.freeze_window_s)  # fmt: skip


@dataclass
class RecoveryResult:
    servers: list[recovery.BootedServer]
    volumes: dict[tuple[str, str], str]  # (server, volume name) -> target volume id
    ledger: recovery.Ledger
    mapping: recovery.Mapping
    missing: list[recovery.Missing]
    rto_s: float
    timings: dict[str, float] = field(default_factory=dict)
    floating_ips: list[floating.FloatingIpResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was decided and why, for the user
    project_id: str | None = None  # the project the servers run in


Target = tuple[str, str]  # (source server name, source volume name)


def preflight(
    conn: Connection, inv: AppInventory, mapping: recovery.Mapping, drill: bool = False
) -> list[recovery.Missing]:
    """Everything the target lacks, identity first. A drill needs no production network,
    router or external network: its bubble stands in for them."""
    missing = identity.preflight(conn, inv, mapping)
    pid = identity.project_id(conn, mapping)
    missing += recovery.preflight(
        conn, inv, mapping, project_exists=bool(pid), project_id=pid or None
    )
    if drill:
        return [m for m in missing if m.kind not in _BUBBLE_KINDS]
    return missing + floating.preflight(conn, inv, mapping)


_BUBBLE_KINDS = {"network", "router", "external_network"}


def recover(
    conn: Connection,
    point: ProtectedPoint,
    stages: Sequence[Sequence[str]],
    mapping: recovery.Mapping | None = None,
    drill: str | None = None,
    into: dict[Target, str] | None = None,
) -> RecoveryResult:
    """Bring the point's servers up at ``conn``'s region. ``drill`` names a test bubble:
    the servers then run only on the bubble's isolated networks.

    Preflight runs before anything is created and stops the recovery when the target lacks
    something Haven cannot create. ``into`` names existing ``available`` volumes to restore
    onto (failback into the original volumes); the others are created with the captured
    size and volume type, then restored. A drill that fails is cleaned up before the error
    propagates, so it leaves nothing half-made; a failover that fails keeps what it made
    (its ledger is on the error as ``ledger``) for a retry or an explicit cleanup.
    """
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    ledger = recovery.Ledger()
    inv = point.inventory
    mapping = mapping or recovery.Mapping()
    into = into or {}
    missing = preflight(conn, inv, mapping, drill=bool(drill))
    recovery.check(missing, mapping)
    timings["preflight"] = time.monotonic() - t0
    notes: list[str] = []
    try:
        conn, idnotes = identity.ensure_project(conn, inv, mapping, ledger)
        notes += idnotes
        if drill:
            # production networks are neither used nor needed: the bubble stands in for them
            bubble_map = recovery.bubble(conn, inv, drill, ledger)
            bubble_map.flavors, bubble_map.keypairs = mapping.flavors, mapping.keypairs
            bubble_map.security_groups = mapping.security_groups
            bubble_map.project = mapping.project
            net_free = replace(inv, networks=(), routers=())
            recovery.ensure_infrastructure(conn, net_free, bubble_map, ledger)
            mapping = bubble_map
        else:
            recovery.ensure_infrastructure(conn, inv, mapping, ledger)
        timings["infrastructure"] = time.monotonic() - t0
        volumes = restore_volumes(conn, point, mapping.server_prefix, ledger, into)
        timings["volumes"] = time.monotonic() - t0
        booted = recovery.boot_servers(conn, inv, stages, volumes, mapping, ledger)
        timings["servers"] = time.monotonic() - t0
        fips: list[floating.FloatingIpResult] = []
        if drill:
            if inv.floating_ips:
                notes.append(
                    f"drill: {len(inv.floating_ips)} floating IP(s) not created "
                    "(the bubble has no external network)"
                )
        else:
            fips = floating.restore(conn, inv, booted, mapping, ledger)
            timings["floating_ips"] = time.monotonic() - t0
    except Exception as exc:
        if drill:
            recovery.cleanup(conn, ledger)
        else:
            exc.ledger = ledger  # type: ignore[attr-defined]
        raise
    return RecoveryResult(
        booted,
        volumes,
        ledger,
        mapping,
        missing,
        time.monotonic() - t0,
        timings,
        fips,
        notes,
        conn.current_project_id,
    )


def restore_volumes(
    conn: Connection,
    point: ProtectedPoint,
    prefix: str,
    ledger: recovery.Ledger,
    into: dict[Target, str],
) -> dict[Target, str]:
    """Import each volume's backup chain and restore its last backup: onto the volume
    ``into`` names, else onto a new volume of the captured size and type (Cinder's restore
    into a new volume would ignore the type). All restores run at once; each new volume
    carries ``haven:source`` (the source volume's id) so failback can find its original."""
    bs = conn.block_storage
    jobs: list[tuple[Target, str, str, bool, str]] = []  # target, backup, volume, boot, source
    created = []
    for srv in point.inventory.servers:
        for v in srv.volumes:
            vb = point.backups[v.source_id]
            backups.import_chain(conn, vb.chain)
            boot = v.bootable or v.boot_index == 0
            vid = into.get((srv.name, v.name))
            if vid is not None:
                ledger.add("restored_into", vid)
            else:
                kw: dict[str, object] = {"size": v.size_gib, "name": f"{prefix}{v.name}"}
                if v.volume_type:
                    kw["volume_type"] = v.volume_type
                vol = bs.create_volume(**kw)
                ledger.add("volume", vol.id)
                vid = vol.id
                created.append(vid)
            jobs.append(((srv.name, v.name), vb.backup_id, vid, boot, v.source_id))
    for vid in created:
        wait_status(f"volume {vid}", lambda vid=vid: bs.get_volume(vid), {"available"})
    for _t, bid, vid, _b, _s in jobs:
        backups.start_restore(conn, bid, vid)
    out = {}
    for target, bid, vid, boot, source in jobs:
        backups.wait_restored(conn, bid, vid, boot)
        if vid in created:  # after the restore: Cinder writes the backed-up metadata back
            bs.set_volume_metadata(vid, **{"haven:source": source})
        out[target] = vid
    return out
