"""Data path 1: Cinder backup into the recovery site's backup store.

Backups are taken from the point's snapshots, never from the live volume: a posix backup
of an NFS volume that has snapshots stores the qcow2 overlay instead of the volume's data
(Cinder bug seen on Zed), while a backup of a snapshot reads the snapshot's data. The
first backup of a volume is full, later ones are incremental (Cinder picks the volume's
latest backup as the parent). Each backup's exported record (and its ancestors', parents
first) goes into the recovery point so the recovery region can import the chain and
restore even when the protected region is gone. Restored data must be verified by
content, not by the backup's status.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from openstack.connection import Connection

from haven.sites.openstack.connection import wait_status
from haven.sites.openstack.errors import OpenStackSiteError
from haven.sites.openstack.snapshots import SnapshotSet


@dataclass(frozen=True, slots=True)
class BackupRecord:
    """An exported Cinder backup record: enough to import it at another region."""

    backup_id: str
    parent_id: str | None
    service: str
    url: str
    size_gib: int
    incremental: bool


@dataclass(frozen=True, slots=True)
class VolumeBackup:
    volume_id: str
    volume_name: str
    backup_id: str
    chain: tuple[BackupRecord, ...]  # full first, this backup last


def _parent_of(url: str) -> str | None:
    try:
        return json.loads(base64.b64decode(url)).get("parent_id")
    except (ValueError, TypeError):
        return None


def export(conn: Connection, backup_id: str) -> BackupRecord:
    rec = conn.block_storage.export_backup(backup_id)
    rec = rec.get("backup-record", rec)
    b = conn.block_storage.get_backup(backup_id)
    return BackupRecord(
        backup_id,
        _parent_of(rec["backup_url"]),
        rec["backup_service"],
        rec["backup_url"],
        b.size,
        bool(b.is_incremental),
    )


def backup_snapshots(
    conn: Connection,
    snapset: SnapshotSet,
    previous: dict[str, VolumeBackup] | None = None,
    timeout: float = 1800,
) -> dict[str, VolumeBackup]:
    """Back up every snapshot of the set; incremental where ``previous`` has the volume."""
    bs = conn.block_storage
    previous = previous or {}
    started = []
    for s in snapset.snaps:
        incr = s.volume_id in previous
        b = bs.create_backup(
            volume_id=s.volume_id,
            snapshot_id=s.snapshot_id,
            is_incremental=incr,
            force=True,
            name=f"haven-{snapset.point_id}-{s.volume_name}",
        )
        started.append((s, b))
        # cinder-backup serialises per volume anyway; waiting keeps parents well defined
        wait_status(
            f"backup {b.id}", lambda b=b: bs.get_backup(b.id), {"available"}, timeout=timeout
        )
    out = {}
    for s, b in started:
        rec = export(conn, b.id)
        chain: tuple[BackupRecord, ...]
        if rec.parent_id:
            prev = previous.get(s.volume_id)
            if prev is None or prev.chain[-1].backup_id != rec.parent_id:
                chain = _chain(conn, rec)
            else:
                chain = (*prev.chain, rec)
        else:
            chain = (rec,)
        out[s.volume_id] = VolumeBackup(s.volume_id, s.volume_name, b.id, chain)
    return out


def _chain(conn: Connection, rec: BackupRecord) -> tuple[BackupRecord, ...]:
    chain = [rec]
    while chain[0].parent_id:
        chain.insert(0, export(conn, chain[0].parent_id))
    return tuple(chain)


def import_chain(conn: Connection, chain: tuple[BackupRecord, ...], timeout: float = 600) -> str:
    """Import a backup chain at the target region (parents first); skip what it has."""
    bs = conn.block_storage
    for rec in chain:
        if bs.find_backup(rec.backup_id) is not None:
            continue
        # openstacksdk 4.22's import_backup posts to .../export_record and sends the path
        # as backup_url: call the API directly
        resp = bs.post(
            "/backups/import_record",
            json={"backup-record": {"backup_service": rec.service, "backup_url": rec.url}},
        )
        if resp.status_code >= 400:
            raise OpenStackSiteError(
                f"import of backup {rec.backup_id}: {resp.status_code} {resp.text[:300]}"
            )
        bid = resp.json()["backup"]["id"]
        if bid != rec.backup_id:
            raise OpenStackSiteError(f"imported backup got id {bid}, expected {rec.backup_id}")
        wait_status(
            f"imported backup {bid}",
            lambda bid=bid: bs.get_backup(bid),
            {"available"},
            timeout=timeout,
        )
    return chain[-1].backup_id


def start_restore(conn: Connection, backup_id: str, volume_id: str) -> None:
    """Restore a backup onto an existing ``available`` volume at least as large (Cinder
    keeps the volume's id, type and name). Wait with :func:`wait_restored`."""
    conn.block_storage.restore_backup(backup_id, volume=volume_id)


def wait_restored(
    conn: Connection, backup_id: str, volume_id: str, bootable: bool, timeout: float = 1800
) -> None:
    bs = conn.block_storage
    vol = wait_status(
        f"restore of {backup_id} into {volume_id}",
        lambda: bs.get_volume(volume_id),
        {"available"},
        timeout=timeout,
    )
    wait_status(
        f"backup {backup_id}", lambda: bs.get_backup(backup_id), {"available"}, timeout=timeout
    )
    if bootable:
        bs.set_volume_bootable_status(vol, True)
