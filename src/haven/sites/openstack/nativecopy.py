"""Data path 1 for the engine: one disk of a point as a Cinder backup chain.

The engine's protect step calls :func:`backup_disk` per disk of a point (the point's
snapshot is backed up, incrementally when the parent point's ref names a backup of the same
volume) and stores the returned ref in the recovery point; its recover step calls
:func:`restore_disk` at the recovery region, which imports the chain's exported records
(parents first) and restores the newest backup onto the volume the engine created.

A ref is ``native:cinder-backup:`` + JSON of the chain's exported records: self-contained,
so the recovery region needs nothing from the protected one. Records carry no secret (the
backup service name and a base64 URL of the backup's metadata).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from haven.domain.points import NATIVE_PREFIX
from haven.sites.errors import SiteInputError
from haven.sites.openstack import backups
from haven.sites.openstack.snapshots import SnapshotSet, VolumeSnap

KIND = "cinder-backup:"
GiB = 1024**3


def to_ref(vb: backups.VolumeBackup) -> str:
    body = {"volume_id": vb.volume_id, "volume_name": vb.volume_name,
            "chain": [asdict(r) for r in vb.chain]}  # fmt: skip
    return NATIVE_PREFIX + KIND + json.dumps(body, separators=(",", ":"))


def from_ref(ref: str) -> backups.VolumeBackup:
    head = NATIVE_PREFIX + KIND
    if not ref.startswith(head):
        raise SiteInputError("point.volumes.manifest", "not a Cinder backup ref of this driver")
    try:
        body = json.loads(ref[len(head) :])
        chain = tuple(backups.BackupRecord(**r) for r in body["chain"])
        return backups.VolumeBackup(
            body["volume_id"], body["volume_name"], chain[-1].backup_id, chain
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise SiteInputError(
            "point.volumes.manifest", f"damaged Cinder backup ref: {exc}"
        ) from None


def backup_disk(
    conn: Any, point_id: str, snap: VolumeSnap, parent_ref: str | None
) -> tuple[str, int]:
    """Back up one snapshot (incremental when ``parent_ref`` is a backup of the same
    volume); returns (ref, the volume's size in bytes: what a full backup reads)."""
    previous = None
    if parent_ref is not None:
        parent = from_ref(parent_ref)
        if parent.volume_id == snap.volume_id:
            previous = {snap.volume_id: parent}
    one = SnapshotSet(point_id, "per-disk", (snap,))
    vb = backups.backup_snapshots(conn, one, previous)[snap.volume_id]
    return to_ref(vb), snap.size_gib * GiB


def restore_disk(conn: Any, ref: str, volume_id: str) -> None:
    """Import the chain here (parents first; what exists is skipped) and restore its newest
    backup onto the existing, available ``volume_id``."""
    vb = from_ref(ref)
    backups.import_chain(conn, vb.chain)
    backups.start_restore(conn, vb.backup_id, volume_id)
    backups.wait_restored(conn, vb.backup_id, volume_id, bootable=False)
