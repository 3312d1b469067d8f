"""Our NBD client against a real qemu-nbd serving a qcow2 file (needs qemu-utils)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tests.conftest import lab_unavailable

from haven.domain.inventory import VolumeInfo

pytestmark = pytest.mark.kvm
MiB = 1024 * 1024


@pytest.fixture()
def volume(tmp_path: Path) -> VolumeInfo:
    if not shutil.which("qemu-nbd") or not shutil.which("qemu-img"):
        lab_unavailable("qemu-utils not installed: run lab/kvm/ci-setup.sh")
    pytest.importorskip("libvirt")
    path = tmp_path / "v.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return VolumeInfo(str(path), "v", 16 * MiB, "qcow2")


def test_write_read_zero_and_allocation(volume: VolumeInfo, tmp_path: Path) -> None:
    from haven.sites.libvirt.nbd import NbdClient
    from haven.sites.libvirt.volumes import NbdVolumeWriter

    data = os.urandom(3 * MiB + 123)
    with NbdVolumeWriter(volume, str(tmp_path), fresh=True) as w:
        assert w.size == 16 * MiB and w.fresh
        w.write(5 * MiB, data)
        w.zero(6 * MiB, MiB)
        back = bytearray(len(data))
        assert w.readinto(5 * MiB, back) == len(data)
        assert back[:MiB] == data[:MiB] and back[MiB : 2 * MiB] == bytes(MiB)
    raw = tmp_path / "v.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", volume.id, str(raw)], check=True)
    img = raw.read_bytes()
    assert img[5 * MiB : 6 * MiB] == data[:MiB] and img[7 * MiB : 8 * MiB + 123] == data[2 * MiB :]
    assert img[: 5 * MiB] == bytes(5 * MiB)

    sock = str(tmp_path / "r.sock")
    proc = subprocess.Popen(["qemu-nbd", "-f", "qcow2", "-k", sock, "-x", "vol", "--read-only",
                             "--persistent", volume.id])  # fmt: skip
    try:
        while not os.path.exists(sock):  # qemu-nbd listens once the image is open
            assert proc.poll() is None, "qemu-nbd exited"
            time.sleep(0.01)
        with NbdClient(sock, "vol", "base:allocation") as c:
            status = c.block_status()
            assert sum(e.length for e in status) == 16 * MiB
            data_ranges = [(e.offset, e.length) for e in status if not e.flags & 1]
            assert data_ranges and data_ranges[0][0] == 5 * MiB
            tail = bytearray(MiB + 10)  # a read across the end is short
            assert c.readinto(15 * MiB, tail) == MiB
    finally:
        proc.terminate()
        proc.wait(10)
