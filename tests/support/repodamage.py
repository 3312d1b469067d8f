"""Damaging a local repository on disk the way a failing disk or a bad copy would.

Packs live under ``<repo>/data/<pp>/<pack id>`` and start with an 8-byte magic; a byte
flipped just after it lands in the first chunk blob, which then fails authentication
(``CorruptObject`` naming the pack) when restore, verify or ``check --read-data`` read it.
"""

from __future__ import annotations

from pathlib import Path

FIRST_BLOB_BYTE = 12  # after b"HVNPACK1", inside the first chunk blob


def packs(repo: Path) -> list[Path]:
    """Pack files, oldest first (by modification time, then name)."""
    found = [p for p in (repo / "data").rglob("*") if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def pack_key(repo: Path, pack: Path) -> str:
    """The pack's object name as the repository reports it (``data/pp/id``)."""
    return pack.relative_to(repo).as_posix()


def flip_byte(path: Path, offset: int = FIRST_BLOB_BYTE) -> None:
    """Invert one byte in place (flipping it again restores the file)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def manifests(repo: Path) -> list[Path]:
    return sorted((repo / "manifests").iterdir())
