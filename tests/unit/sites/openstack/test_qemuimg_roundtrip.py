"""qemu-img conversions of the qcow2 image transfer: a round trip keeps content and holes;
a qcow2 that points at another file, or has another virtual size, is refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from haven.sites.errors import SiteIOError
from haven.sites.openstack import qemuimg
from haven.sites.openstack.sparse import SparseFile

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(not qemuimg.available(), reason="qemu-img not installed")


def test_round_trip_keeps_content_and_holes(tmp_path: Path) -> None:
    size = 16 * MiB
    data = os.urandom(MiB)
    q = str(tmp_path / "v.qcow2")
    with SparseFile(size, str(tmp_path)) as src:
        src.pwrite(5 * MiB, data)
        qemuimg.raw_to_qcow2(src.path, q, "test")
    assert os.path.getsize(q) < 2 * MiB + 512 * 1024  # the holes were not stored
    with SparseFile(size, str(tmp_path)) as dst:
        qemuimg.qcow2_to_raw(q, dst.path, size, "test")
        buf = bytearray(MiB)
        assert dst.pread(5 * MiB, buf) == MiB and bytes(buf) == data
        assert sum(e.length for e in dst.allocated()) <= 2 * MiB


def test_refuses_backing_file_and_wrong_size(tmp_path: Path) -> None:
    base, top = tmp_path / "base.raw", tmp_path / "top.qcow2"
    base.write_bytes(bytes(MiB))
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
                    str(top)], check=True)  # fmt: skip
    with pytest.raises(SiteIOError, match="another file"):
        qemuimg.check_qcow2(str(top), MiB, "test")
    plain = tmp_path / "plain.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(plain), "2M"], check=True)
    with pytest.raises(SiteIOError, match="virtual size"):
        qemuimg.check_qcow2(str(plain), MiB, "test")
