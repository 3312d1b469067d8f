"""Crash-consistent group points in Cinder: generic volume group snapshots, else per volume.

A generic volume group snapshot (Cinder API microversion >= 3.14) takes every volume's
snapshot in one request; where groups are unavailable (older API, no group type, volumes
of several backends, not allowed to create a group type) each volume is snapshotted
separately, as close together as the API allows, and the point says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from openstack.connection import Connection

from haven.sites.openstack.connection import wait_status
from haven.sites.openstack.errors import OpenStackSiteError

GROUP_TYPE = "haven-consistency"
MIN_GROUP_MICROVERSION = (3, 14)


@dataclass(frozen=True, slots=True)
class VolumeSnap:
    volume_id: str
    volume_name: str
    snapshot_id: str
    size_gib: int


@dataclass(frozen=True, slots=True)
class SnapshotSet:
    point_id: str
    method: str  # "group" | "per-volume"
    snaps: tuple[VolumeSnap, ...]
    group_id: str | None = None
    group_snapshot_id: str | None = None
    reason: str | None = None  # why per-volume was used
    taken_at: float = 0.0
    duration_s: float = 0.0

    def for_volume(self, volume_id: str) -> VolumeSnap:
        for s in self.snaps:
            if s.volume_id == volume_id:
                return s
        raise KeyError(volume_id)


def max_microversion(conn: Connection) -> tuple[int, int]:
    """The block-storage API's highest microversion, from version discovery."""
    data = conn.block_storage.get_endpoint_data()
    mv = getattr(data, "max_microversion", None) if data else None
    return (int(mv[0]), int(mv[1])) if mv else (3, 0)


def snapshot_volumes(
    conn: Connection,
    point_id: str,
    volume_ids: list[str],
    group_name: str,
    prefer_group: bool = True,
    timeout: float = 600,
) -> SnapshotSet:
    """Snapshot ``volume_ids`` together; ``group_name`` names the Cinder group Haven keeps."""
    t0 = time.monotonic()
    reason = "group snapshots not requested"
    if prefer_group:
        try:
            return _group_snapshot(conn, point_id, volume_ids, group_name, timeout, t0)
        except Exception as exc:
            reason = f"group snapshot unavailable: {exc}"
    return _per_volume(conn, point_id, volume_ids, reason, timeout, t0)


class _NoGroup(Exception):
    pass


def _group_snapshot(
    conn: Connection,
    point_id: str,
    volume_ids: list[str],
    group_name: str,
    timeout: float,
    t0: float,
) -> SnapshotSet:
    if max_microversion(conn) < MIN_GROUP_MICROVERSION:
        raise _NoGroup("Cinder API below 3.14")
    bs = conn.block_storage
    vols = [bs.get_volume(v) for v in volume_ids]
    group = _ensure_group(conn, group_name, vols, timeout)
    taken_at = time.time()
    gs = bs.create_group_snapshot(group_id=group.id, name=f"haven-{point_id}")
    gs = wait_status(
        f"group snapshot {gs.id}",
        lambda: bs.get_group_snapshot(gs.id),
        {"available"},
        timeout=timeout,
    )
    snaps = []
    by_volume = {
        s.volume_id: s
        for s in bs.snapshots(details=True, all_projects=False)
        if getattr(s, "group_snapshot_id", None) == gs.id
    }
    for v in vols:
        s = by_volume.get(v.id)
        if s is None:
            raise OpenStackSiteError(f"group snapshot {gs.id} has no snapshot of volume {v.id}")
        snaps.append(VolumeSnap(v.id, v.name or v.id, s.id, v.size))
    return SnapshotSet(
        point_id, "group", tuple(snaps), group.id, gs.id, None, taken_at, time.monotonic() - t0
    )


def _ensure_group(conn: Connection, name: str, vols: list, timeout: float):  # type: ignore[no-untyped-def]
    bs = conn.block_storage
    gtype = next((g for g in bs.group_types() if g.name == GROUP_TYPE), None)
    if gtype is None:
        gtype = bs.create_group_type(name=GROUP_TYPE, description="Haven consistency group")
    types = sorted({v.volume_type for v in vols if v.volume_type})
    type_ids = [t.id for t in bs.types() if t.name in types]
    group = next((g for g in bs.groups(details=True) if g.name == name), None)
    if group is None:
        group = bs.create_group(
            name=name,
            group_type=gtype.id,
            volume_types=type_ids,
            description="Haven protection group",
        )
        group = wait_status(
            f"group {name}", lambda: bs.get_group(group.id), {"available"}, timeout=timeout
        )
    members = {v.id for v in vols if getattr(v, "group_id", None) == group.id}
    missing = [v.id for v in vols if v.id not in members]
    others = [v.id for v in vols if getattr(v, "group_id", None) not in (None, group.id)]
    if others:
        raise _NoGroup(f"volumes already in another group: {', '.join(others)}")
    if missing:
        bs.update_group(group, add_volumes=",".join(missing))
        wait_status(f"group {name}", lambda: bs.get_group(group.id), {"available"}, timeout=timeout)
    return group


def _per_volume(
    conn: Connection, point_id: str, volume_ids: list[str], reason: str, timeout: float, t0: float
) -> SnapshotSet:
    bs = conn.block_storage
    taken_at = time.time()
    created = []
    for vid in volume_ids:
        v = bs.get_volume(vid)
        s = bs.create_snapshot(volume_id=vid, force=True, name=f"haven-{point_id}-{v.name or vid}")
        created.append((v, s))
    snaps = []
    for v, s in created:
        wait_status(
            f"snapshot {s.id}", lambda s=s: bs.get_snapshot(s.id), {"available"}, timeout=timeout
        )
        snaps.append(VolumeSnap(v.id, v.name or v.id, s.id, v.size))
    return SnapshotSet(
        point_id, "per-volume", tuple(snaps), None, None, reason, taken_at, time.monotonic() - t0
    )


def find_snapshot_set(conn: Connection, point_id: str) -> SnapshotSet | None:
    """The point's snapshots found by the names snapshot_volumes gave them (a group
    snapshot ``haven-<point>``, else per-volume ``haven-<point>-<volume>``); None if none."""
    bs = conn.block_storage
    gs = next((g for g in bs.group_snapshots() if g.name == f"haven-{point_id}"), None)
    if gs is not None:
        members = [
            s for s in bs.snapshots(details=True) if getattr(s, "group_snapshot_id", None) == gs.id
        ]
        snaps = tuple(VolumeSnap(s.volume_id, s.volume_id, s.id, s.size) for s in members)
        return SnapshotSet(point_id, "group", snaps, gs.group_id, gs.id)
    prefix = f"haven-{point_id}-"
    mine = [s for s in bs.snapshots(details=True) if (s.name or "").startswith(prefix)]
    if not mine:
        return None
    snaps = tuple(VolumeSnap(s.volume_id, s.volume_id, s.id, s.size) for s in mine)
    return SnapshotSet(point_id, "per-volume", snaps)


def delete_snapshot_set(conn: Connection, snapset: SnapshotSet, timeout: float = 600) -> None:
    bs = conn.block_storage
    if snapset.group_snapshot_id:
        bs.delete_group_snapshot(snapset.group_snapshot_id, ignore_missing=True)
        _wait_gone(lambda: bs.find_group_snapshot(snapset.group_snapshot_id), timeout)
        return
    for s in snapset.snaps:
        bs.delete_snapshot(s.snapshot_id, ignore_missing=True)
    for s in snapset.snaps:
        _wait_gone(lambda s=s: bs.find_snapshot(s.snapshot_id), timeout)


def _wait_gone(find, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while find() is not None:
        if time.monotonic() > deadline:
            raise OpenStackSiteError("deletion did not finish in time")
        time.sleep(1)
