"""Volumes in a libvirt storage pool, and writing data into them.

Volumes are qcow2 (so a recovered domain can be protected again with checkpoints and dirty
bitmaps, e.g. for failback). Data is written through ``qemu-nbd`` serving the volume on a
unix socket -- no /dev/nbd needed; qemu-nbd is started by us, stopped by its PID, and must
not run while a domain uses the volume.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import libvirt

from haven.domain.inventory import VolumeInfo
from haven.sites.errors import SiteInputError, SiteIOError
from haven.sites.libvirt.conn import libvirt_errors
from haven.sites.libvirt.nbd import NbdClient


def volume_info(vol: libvirt.virStorageVol) -> VolumeInfo:
    root = ET.fromstring(vol.XMLDesc(0))
    fmt_el = root.find("target/format")
    fmt = fmt_el.get("type", "raw") if fmt_el is not None else "raw"
    return VolumeInfo(id=vol.path(), name=vol.name(), size_bytes=vol.info()[1], format=fmt)


def create(pool: libvirt.virStoragePool, name: str, size_bytes: int) -> VolumeInfo:
    xml = (
        f"<volume><name>{name}.qcow2</name><capacity unit='bytes'>{size_bytes}</capacity>"
        "<target><format type='qcow2'/><compat>1.1</compat></target></volume>"
    )
    with libvirt_errors(f"create volume {name}"):
        vol = pool.createXML(xml, 0)
    return volume_info(vol)


class NbdVolumeWriter:
    """VolumeWriter (the data mover's BlockTarget) over qemu-nbd.

    ``fresh`` is True for a volume created by ``create`` and not yet written (it reads as
    zeros, so restore may skip zero chunks). Closing flushes, disconnects, stops qemu-nbd."""

    def __init__(
        self, volume: VolumeInfo, socket_dir: str, fresh: bool = False, snapshot: str = ""
    ) -> None:
        self._fresh = fresh
        os.makedirs(socket_dir, exist_ok=True)
        self._sock = os.path.join(socket_dir, f"w{os.getpid()}-{time.monotonic_ns()}.sock")
        # an internal snapshot is served read-only (qemu-nbd --load-snapshot)
        mode = (
            ["--read-only", f"--load-snapshot=snapshot.name={snapshot}"]
            if snapshot
            else ["--cache=writeback", "--discard=unmap"]
        )
        self._proc = subprocess.Popen(
            [
                "qemu-nbd",
                "--format",
                volume.format,
                "--socket",
                self._sock,
                *mode,
                "--export-name",
                "vol",
                volume.id,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._read_only = bool(snapshot)
        self._nbd = self._connect()

    def _connect(self) -> NbdClient:
        # qemu-nbd creates the socket once the image is open: wait for it, or for its exit.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise SiteIOError(f"qemu-nbd exited: {err.strip()}")
            if os.path.exists(self._sock):
                with contextlib.suppress(SiteIOError):
                    return NbdClient(self._sock, "vol")
            time.sleep(0.01)
        self._stop()
        raise SiteIOError("qemu-nbd did not listen in 30 s")

    @property
    def size(self) -> int:
        return self._nbd.size

    @property
    def fresh(self) -> bool:
        return self._fresh

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int:
        return self._nbd.readinto(offset, buf)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self._nbd.pwrite(offset, data)

    def zero(self, offset: int, length: int) -> None:
        self._nbd.write_zeroes(offset, length)

    def flush(self) -> None:
        self._nbd.flush()

    def _stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._sock)

    def close(self) -> None:
        try:
            if not self._read_only:
                self._nbd.flush()
            self._nbd.close()
        finally:
            # without --persistent qemu-nbd exits after its only client leaves
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(10)
            self._stop()

    def __enter__(self) -> NbdVolumeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- standalone volumes in a point: qcow2 internal snapshots ---------------------------------
# A volume attached to no running domain is taken into a point as an internal snapshot
# named after the point, created at the point's instant (inside the freeze window),
# read through qemu-nbd, deleted when the point is released. It lives in the volume
# file, so a process that resumes after a crash reads the same snapshot.
QEMU_IMG_TIMEOUT_S = 60


def snapshot_name(point_id: str) -> str:
    return f"haven-{point_id}"


def _qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["qemu-img", *args], capture_output=True, text=True,
                              timeout=QEMU_IMG_TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SiteIOError(f"qemu-img {args[0]} {args[-1]} did not finish") from None


def check_snapshottable(volume: VolumeInfo) -> None:
    if volume.format != "qcow2":
        raise SiteInputError(
            f"volumes.{volume.name}",
            f"volume {volume.name} is {volume.format}: a volume at rest is taken into a point "
            "as a qcow2 internal snapshot; convert it to qcow2 or attach it to a protected "
            "server",
        )


def create_snapshot(volume: VolumeInfo, name: str) -> None:
    """The volume's data now, kept as snapshot ``name`` (one left by a crashed attempt of
    the same point is replaced). Fails while a running domain holds the volume."""
    _qemu_img("snapshot", "-d", name, volume.id)  # absent: nothing to replace
    res = _qemu_img("snapshot", "-c", name, volume.id)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:]
        raise SiteIOError(f"snapshot of volume {volume.name}: {' '.join(tail)}")


def has_snapshot(path: str, name: str) -> bool:
    res = _qemu_img("snapshot", "-l", "-U", path)
    return res.returncode == 0 and any(
        line.split()[1:2] == [name] for line in res.stdout.splitlines()
    )


def delete_snapshot(path: str, name: str) -> None:
    """Best effort: a snapshot that is gone, or an image a domain holds, is left alone."""
    _qemu_img("snapshot", "-d", name, path)


class NbdSnapshotReader(NbdVolumeWriter):
    """PointDiskReader over a volume's internal snapshot (read-only; a full read: no
    changed-block tracking for volumes at rest, the repository still receives only the
    chunks it lacks)."""

    def __init__(self, volume: VolumeInfo, socket_dir: str, snapshot: str) -> None:
        super().__init__(volume, socket_dir, snapshot=snapshot)
        self._count = 0
        self._count_lock = threading.Lock()

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int:
        n = super().readinto(offset, buf)
        with self._count_lock:
            self._count += n
        return n

    def changed_extents(self) -> None:
        return None

    @property
    def bytes_read(self) -> int:
        return self._count

    def write(self, offset: int, data: bytes | memoryview) -> None:
        raise SiteInputError("volume", "a point's snapshot is read-only")
