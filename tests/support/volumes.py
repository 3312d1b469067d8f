"""Sparse test volumes for end-to-end backup/restore tests through a real backend
(tests/integration/swift, tests/integration/s3)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

KiB, MiB = 1024, 1024 * 1024
CHUNK = 256 * KiB


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_volume(path: Path, size: int, rng: random.Random) -> None:
    """A sparse file: holes everywhere, random data in every third chunk, one
    compressible chunk of text at chunk 5."""
    with path.open("wb") as f:
        f.truncate(size)  # a hole everywhere ...
        for off in range(0, size, 3 * CHUNK):  # ... but every third chunk has data
            f.seek(off + rng.randrange(0, CHUNK - 4096))
            f.write(rng.randbytes(rng.choice([4096, 100_000, CHUNK // 2])))
        f.seek(5 * CHUNK)
        f.write(b"text " * (CHUNK // 5))  # compressible
