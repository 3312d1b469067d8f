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
from dataclasses import dataclass, field

from openstack.connection import Connection

from haven.sites.openstack import backups, inventory, recovery, snapshots
from haven.sites.openstack.model import AppInventory


@dataclass(frozen=True, slots=True)
class ProtectedPoint:
    point_id: str
    inventory: AppInventory
    snapset: snapshots.SnapshotSet
    backups: dict[str, backups.VolumeBackup]  # by source volume id
    duration_s: float


def protect(
    conn: Connection,
    site: str,
    server_ids: Sequence[str],
    point_id: str,
    group_name: str,
    previous: ProtectedPoint | None = None,
    prefer_group: bool = True,
    keep_snapshots: bool = False,
) -> ProtectedPoint:
    """Take a point. The snapshots are deleted once their backups exist (``keep_snapshots``
    False): the backups carry the data and the incremental chain, and on NFS-like drivers a
    snapshot left in place turns the next snapshot into a qcow2 layer with a backing file,
    which Cinder's image safety check (since the 2024 qcow2 fixes) refuses to back up."""
    t0 = time.monotonic()
    inv = inventory.capture(conn, site, server_ids)
    volume_ids = [v.source_id for s in inv.servers for v in s.volumes]
    snapset = snapshots.snapshot_volumes(conn, point_id, volume_ids, group_name, prefer_group)
    prev = previous.backups if previous else None
    bk = backups.backup_snapshots(conn, snapset, prev)
    if not keep_snapshots:
        snapshots.delete_snapshot_set(conn, snapset)
    return ProtectedPoint(point_id, inv, snapset, bk, time.monotonic() - t0)


@dataclass
class RecoveryResult:
    servers: list[recovery.BootedServer]
    volumes: dict[tuple[str, str], str]  # (server, volume name) -> target volume id
    ledger: recovery.Ledger
    mapping: recovery.Mapping
    missing: list[recovery.Missing]
    rto_s: float
    timings: dict[str, float] = field(default_factory=dict)


def recover(
    conn: Connection,
    point: ProtectedPoint,
    stages: Sequence[Sequence[str]],
    mapping: recovery.Mapping | None = None,
    drill: str | None = None,
) -> RecoveryResult:
    """Bring the point's servers up at ``conn``'s region. ``drill`` names a test bubble:
    the servers then run only on the bubble's isolated networks."""
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    ledger = recovery.Ledger()
    inv = point.inventory
    mapping = mapping or recovery.Mapping()
    missing = recovery.preflight(conn, inv, mapping)
    try:
        if drill:
            # production networks are neither used nor needed: the bubble stands in for them
            bubble_map = recovery.bubble(conn, inv, drill, ledger)
            bubble_map.flavors, bubble_map.keypairs = mapping.flavors, mapping.keypairs
            bubble_map.security_groups = mapping.security_groups
            net_free = AppInventory(**{**_fields(inv), "networks": (), "routers": ()})
            recovery.ensure_infrastructure(conn, net_free, bubble_map, ledger)
            mapping = bubble_map
        else:
            recovery.ensure_infrastructure(conn, inv, mapping, ledger)
        timings["infrastructure"] = time.monotonic() - t0
        volumes = {}
        for srv in inv.servers:
            for v in srv.volumes:
                vb = point.backups[v.source_id]
                backups.import_chain(conn, vb.chain)
                vid = backups.restore(
                    conn,
                    vb.backup_id,
                    f"{mapping.server_prefix}{v.name}",
                    v.bootable or v.boot_index == 0,
                )
                ledger.add("volume", vid)
                volumes[(srv.name, v.name)] = vid
        timings["volumes"] = time.monotonic() - t0
        booted = recovery.boot_servers(conn, inv, stages, volumes, mapping, ledger)
        timings["servers"] = time.monotonic() - t0
    except Exception:
        if drill:
            recovery.cleanup(conn, ledger)
        raise
    return RecoveryResult(booted, volumes, ledger, mapping, missing, time.monotonic() - t0, timings)


def _fields(inv: AppInventory) -> dict[str, object]:
    return {f: getattr(inv, f) for f in AppInventory.__dataclass_fields__}
