"""Points through libvirt's backup API in pull mode, and readers over its NBD export.

Why pull mode: QEMU keeps the point-in-time view alive with a small fleecing overlay
(``scratch``) while the guest keeps running, and the data mover reads exactly the bytes it
needs over NBD -- no full copy lands on disk first. Each point also creates a libvirt
checkpoint (``haven-<point_id>``) holding a persistent dirty bitmap per disk; the next
point with ``<incremental>`` exports the blocks changed since that checkpoint as the NBD
meta context ``qemu:dirty-bitmap:backup-<target>``.

Contract: a point is readable between ``begin`` and ``end``; ``end`` aborts the backup job
(which is how a pull backup finishes) and removes scratch files, keeping the checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from haven.domain.extents import Extent, merge_extents
from haven.sites.errors import SiteIOError
from haven.sites.libvirt.conn import libvirt_errors
from haven.sites.libvirt.nbd import NbdClient

_DIRTY = 1  # NBD_STATE_DIRTY in a qemu:dirty-bitmap context
_HOLE, _ZERO = 1, 2  # NBD_STATE_HOLE, NBD_STATE_ZERO in base:allocation


def checkpoint_name(point_id: str) -> str:
    return f"haven-{point_id}"


@dataclass(frozen=True, slots=True)
class BackupJob:
    domain: str
    socket: str  # NBD unix socket of this domain's export
    targets: tuple[str, ...]
    scratch: tuple[str, ...]
    incremental: bool


def _short(*parts: str) -> str:
    # unix socket paths are limited to 107 bytes: name files by a hash
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def begin(
    dom: libvirt.virDomain,
    point_id: str,
    parent_point_id: str | None,
    targets: tuple[str, ...],
    all_targets: tuple[str, ...],
    scratch_dir: str,
    socket_dir: str,
) -> BackupJob:
    """Start a pull backup + checkpoint of ``targets`` (the snapshot instant is when this
    returns). ``all_targets`` are the domain's disks: others get backup/checkpoint 'no'."""
    key = _short(dom.UUIDString(), point_id)
    sock = os.path.join(socket_dir, f"{key}.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)
    bk = ET.Element("domainbackup", mode="pull")
    if parent_point_id is not None:
        ET.SubElement(bk, "incremental").text = checkpoint_name(parent_point_id)
    ET.SubElement(bk, "server", transport="unix", socket=sock)
    cp = ET.Element("domaincheckpoint")
    ET.SubElement(cp, "name").text = checkpoint_name(point_id)
    bdisks = ET.SubElement(bk, "disks")
    cdisks = ET.SubElement(cp, "disks")
    scratch: list[str] = []
    for t in all_targets:
        if t in targets:
            path = os.path.join(scratch_dir, f"{key}-{t}.scratch.qcow2")
            scratch.append(path)
            d = ET.SubElement(
                bdisks,
                "disk",
                name=t,
                backup="yes",
                type="file",
                exportname=t,
                exportbitmap=f"backup-{t}",
            )
            ET.SubElement(d, "scratch", file=path)
            ET.SubElement(cdisks, "disk", name=t, checkpoint="bitmap")
        else:
            ET.SubElement(bdisks, "disk", name=t, backup="no")
            ET.SubElement(cdisks, "disk", name=t, checkpoint="no")
    with libvirt_errors(f"backup-begin of {dom.name()}"):
        dom.backupBegin(ET.tostring(bk, encoding="unicode"), ET.tostring(cp, encoding="unicode"))
    return BackupJob(dom.name(), sock, targets, tuple(scratch), parent_point_id is not None)


def attach(dom: libvirt.virDomain, point_id: str, socket_dir: str) -> BackupJob | None:
    """The backup job of ``point_id`` still open on ``dom``, or None.

    A pull backup job lives in libvirt, not in the process that began it: after that
    process dies (kill -9 mid-backup), a restarted engine re-attaches here instead of
    failing. The job is recognised by its NBD socket, whose name derives from the domain
    and the point id (see ``begin``)."""
    sock = os.path.join(socket_dir, f"{_short(dom.UUIDString(), point_id)}.sock")
    try:
        root = ET.fromstring(dom.backupGetXMLDesc(0))
    except libvirt.libvirtError:  # no backup job on this domain
        return None
    server = root.find("server")
    if server is None or server.get("socket") != sock:
        return None
    disks = [d for d in root.findall("disks/disk") if d.get("backup", "yes") == "yes"]
    targets = tuple(str(d.get("name")) for d in disks)
    scratch = tuple(str(sc.get("file")) for d in disks if (sc := d.find("scratch")) is not None)
    return BackupJob(dom.name(), sock, targets, scratch, root.find("incremental") is not None)


def end(dom: libvirt.virDomain, job: BackupJob) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        dom.abortJob()
    for path in job.scratch:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def delete_checkpoint(dom: libvirt.virDomain, point_id: str) -> None:
    """Delete a checkpoint; libvirt merges its bitmap into the previous one."""
    with libvirt_errors(f"checkpoint delete on {dom.name()}"):
        cp = dom.checkpointLookupByName(checkpoint_name(point_id))
        cp.delete(0)


class NbdPointReader:
    """PointDiskReader (and the data mover's BlockSource) over a pull-backup export.

    Counts the bytes it reads, so tests and metrics can show that an incremental read only
    the changed extents."""

    def __init__(self, job: BackupJob, target: str) -> None:
        ctx = f"qemu:dirty-bitmap:backup-{target}" if job.incremental else None
        self._nbd = NbdClient(job.socket, target, ctx)
        self._incremental = job.incremental
        self._changed: list[Extent] | None = None
        self._allocated: list[Extent] | None = None
        self._job, self._target = job, target
        self._read = 0
        self._count_lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._nbd.size

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int:
        n = self._nbd.readinto(offset, buf)
        with self._count_lock:
            self._read += n
        return n

    def pread(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        n = self.readinto(offset, buf)
        return bytes(buf[:n])

    def changed_extents(self) -> list[Extent] | None:
        if not self._incremental:
            return None
        if self._changed is None:
            try:
                status = self._nbd.block_status()
            except OSError as exc:
                raise SiteIOError(f"block status: {exc}") from exc
            self._changed = merge_extents(
                Extent(e.offset, e.length) for e in status if e.flags & _DIRTY
            )
        return list(self._changed)

    def allocated(self) -> list[Extent]:
        """Extents that may hold non-zero data (the data mover's AllocationMap): from the
        export's ``base:allocation`` context, holes and known-zero ranges left out."""
        if self._allocated is None:
            with NbdClient(self._job.socket, self._target, "base:allocation") as probe:
                status = probe.block_status()
            self._allocated = merge_extents(
                Extent(e.offset, e.length) for e in status if not e.flags & (_HOLE | _ZERO)
            )
        return list(self._allocated)

    @property
    def bytes_read(self) -> int:
        return self._read

    def close(self) -> None:
        self._nbd.close()
