"""qemu-img conversions between a local sparse raw file and a qcow2 file, for moving
volume data through Glance as compact qcow2 images (only allocated clusters travel).

Contract: the formats are always given explicitly (``-f``), a qcow2 from the cloud is
accepted only if it is self-contained (no backing file, no external data file) and has
exactly the expected virtual size; converting into the raw file never writes zeros
(``--target-is-zero`` onto a freshly truncated file), so holes stay holes. Failures raise
SiteIOError with qemu-img's message (paths of local temp files only, nothing secret).
"""

from __future__ import annotations

import json
import shutil
import subprocess

from haven.sites.errors import SiteIOError, UnsupportedCapability

QEMU_IMG = "qemu-img"


def available() -> bool:
    return shutil.which(QEMU_IMG) is not None


def _run(argv: list[str], what: str) -> str:
    if not available():
        raise UnsupportedCapability(
            f"{what}: qcow2 image transfers need qemu-img on this host (install qemu-utils) "
            "or image_format 'raw'"
        )
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise SiteIOError(f"{what}: qemu-img failed: {exc.stderr.strip()[:400]}") from exc
    return done.stdout


def check_qcow2(path: str, virtual_size: int, what: str) -> None:
    """Refuse a qcow2 that is not a plain, self-contained copy of a volume of that size."""
    info = json.loads(_run([QEMU_IMG, "info", "-f", "qcow2", "--output=json", path], what))
    data_file = (info.get("format-specific") or {}).get("data", {}).get("data-file")
    if info.get("backing-filename") or data_file:
        raise SiteIOError(f"{what}: the qcow2 image refers to another file; refused")
    if int(info.get("virtual-size", -1)) != virtual_size:
        raise SiteIOError(
            f"{what}: the qcow2 image's virtual size is {info.get('virtual-size')}, "
            f"the volume's {virtual_size}"
        )


def qcow2_to_raw(src: str, dst: str, virtual_size: int, what: str) -> None:
    """Convert ``src`` (qcow2) into ``dst``, an existing all-zero raw file of the size."""
    check_qcow2(src, virtual_size, what)
    _run([QEMU_IMG, "convert", "-n", "--target-is-zero", "-f", "qcow2", "-O", "raw",
          src, dst], what)  # fmt: skip


def raw_to_qcow2(src: str, dst: str, what: str) -> None:
    """Write ``src`` (raw, sparse) as a new qcow2 ``dst``; zero clusters are not stored."""
    _run([QEMU_IMG, "convert", "-f", "raw", "-O", "qcow2", src, dst], what)
