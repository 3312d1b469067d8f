"""Fixtures for data-mover unit tests: small repositories and small sparse images."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from haven.datamover import Repository, new_master_key
from haven.datamover.backends import LocalBackend, MemoryBackend
from haven.datamover.locks import LockPolicy

KiB = 1024
CHUNK = 64 * KiB
PACK = 256 * KiB

FAST_LOCKS = LockPolicy(
    wait=20.0, stale_after=30.0, refresh_every=1.0, retry_min=0.01, retry_max=0.1
)


def make_repo(backend: MemoryBackend | LocalBackend, **kw: object) -> Repository:
    repo = Repository.init(
        backend,
        master_key=kw.pop("master_key", new_master_key()),
        chunk_size=CHUNK,
        pack_size=PACK,
        **kw,
    )  # type: ignore[arg-type]
    repo.lock_policy = FAST_LOCKS
    return repo


@pytest.fixture
def repo_factory() -> Callable[..., Repository]:
    return make_repo


@pytest.fixture
def mem_repo() -> Repository:
    return make_repo(MemoryBackend())


@pytest.fixture
def local_repo(tmp_path: Path) -> Repository:
    return make_repo(LocalBackend(tmp_path / "repo"))


ImageMaker = Callable[..., Path]


def write_image(path: Path, size: int, regions: list[tuple[int, bytes]]) -> Path:
    """A sparse file of ``size`` bytes with ``data`` written at each offset."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in regions:
            f.seek(off)
            f.write(data)
    return path


@pytest.fixture
def image(tmp_path: Path) -> ImageMaker:
    counter = iter(range(10**6))

    def make(size: int = 2 * 1024 * KiB, regions: list[tuple[int, bytes]] | None = None) -> Path:
        if regions is None:
            regions = [
                (0, os.urandom(100 * KiB)),
                (300 * KiB, b"compressible text " * 8000),
                (1024 * KiB + 5, os.urandom(70 * KiB)),
            ]
        return write_image(tmp_path / f"img{next(counter)}", size, regions)

    return make


@pytest.fixture(autouse=True)
def _private_haven_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI remembers repositories' heads under HAVEN_HOME: never the real one."""
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "haven-home"))
