"""A small real repository with known points, and faults to inject into its objects.

Used by the repository fault-injection suite (tests/unit/datamover/test_dm_faults.py) and
the repair tests. Objects are damaged as files on disk (a local-directory repository), the
way a failing disk or a careless operator would damage them.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from haven.datamover import Repository, backup_volume, new_master_key
from haven.datamover.backends import LocalBackend
from haven.datamover.blockio import FileSource
from haven.datamover.heads import HEAD_PREFIX, list_head_seqs
from haven.datamover.locks import LockKind, LockPolicy
from haven.datamover.manifest import MANIFEST_PREFIX
from haven.datamover.packs import INDEX_PREFIX, PACK_PREFIX, index_key, pack_key

KiB = 1024
CHUNK = 64 * KiB
PACK = 256 * KiB
FAST_LOCKS = LockPolicy(
    wait=20.0, stale_after=30.0, refresh_every=1.0, retry_min=0.01, retry_max=0.1
)


class Fault(StrEnum):
    FLIP = "flip"  # one byte in the middle inverted
    TRUNCATE = "truncate"  # cut to half its length
    DELETE = "delete"
    DUPLICATE = "duplicate"  # a copy under another name of the same kind
    SWAP = "swap"  # its content exchanged with another object of the same kind
    STALE = "stale"  # an older object put back (or renamed to look newer)


@dataclass
class World:
    """A local repository with volumes a, b, c: two points each (the second incremental,
    only ``a`` changed), plus one point of ``a`` that prune forgot (its manifest kept
    aside as ``stale_manifest`` for STALE faults)."""

    root: Path
    state: Path
    master: bytes
    sources: dict[str, bytes] = field(default_factory=dict)  # manifest id -> volume bytes
    volume_of: dict[str, str] = field(default_factory=dict)  # manifest id -> volume
    stale_manifest: tuple[str, bytes] = ("", b"")

    def open(self) -> Repository:
        repo = Repository.open(
            LocalBackend(self.root), master_key=self.master, state_dir=self.state
        )
        repo.lock_policy = FAST_LOCKS
        return repo

    def path(self, key: str) -> Path:
        return self.root / key

    def keys_of(self, prefix: str) -> list[str]:
        return sorted(i.key for i in LocalBackend(self.root).list(prefix))

    def chunks_by_pack(self) -> dict[str, set[bytes]]:
        repo = self.open()
        return {p: {e.chunk_id for e in es} for p, es in repo.index.packs.items()}

    def needs(self) -> dict[str, set[bytes]]:
        """manifest id -> chunk ids it references."""
        repo = self.open()
        return {mid: repo.load_manifest(mid).referenced() for mid in self.sources}


def _image(path: Path, rng: random.Random, size: int = 1024 * KiB) -> bytes:
    data = bytearray(size)
    for off in range(0, size, CHUNK):
        if rng.random() < 0.8:  # some zero chunks (holes) too
            data[off : off + CHUNK] = rng.randbytes(CHUNK // 2) + b"z" * (CHUNK // 2)
    path.write_bytes(bytes(data))
    return bytes(data)


def build_world(tmp: Path, seed: int = 7) -> World:
    rng = random.Random(seed)
    world = World(tmp / "repo", tmp / "state", new_master_key())
    repo = Repository.init(
        LocalBackend(world.root), master_key=world.master, chunk_size=CHUNK, pack_size=PACK,
        state_dir=world.state,
    )  # fmt: skip
    repo.lock_policy = FAST_LOCKS
    images = {v: tmp / f"{v}.img" for v in "abc"}
    parents: dict[str, str] = {}
    for point in ("p1", "p2", "p3"):
        for v, path in images.items():
            data = _image(path, rng) if point == "p1" or v == "a" else path.read_bytes()
            with FileSource(path) as src:
                res = backup_volume(repo, src, volume=v, point_id=point, parent=parents.get(v))
            mid = res.manifest.manifest_id
            parents[v] = mid
            world.sources[mid], world.volume_of[mid] = data, v
    # forget a@p2 (keeping its manifest object aside): a STALE manifest to put back
    forgotten = next(m for m, v in world.volume_of.items() if v == "a")
    blob = world.path(MANIFEST_PREFIX + forgotten).read_bytes()
    repo.delete_manifest(forgotten)
    world.stale_manifest = (forgotten, blob)
    del world.sources[forgotten], world.volume_of[forgotten]
    return world


def victim(world: World, kind: str) -> str:
    """The object of ``kind`` a fault hits: for packs and indexes one holding chunks of
    volume ``b`` that no other volume shares; for manifests and heads the newest."""
    if kind in ("pack", "index"):
        needs = world.needs()
        only_b = set().union(*(c for m, c in needs.items() if world.volume_of[m] == "b"))
        others = set().union(*(c for m, c in needs.items() if world.volume_of[m] != "b"))
        for pack_id, chunks in sorted(world.chunks_by_pack().items()):
            if chunks & only_b and not chunks & others:
                return pack_key(pack_id) if kind == "pack" else index_key(pack_id)
        raise AssertionError("no pack holds only volume b's chunks")
    if kind == "manifest":
        b = [m for m, v in world.volume_of.items() if v == "b"]
        return MANIFEST_PREFIX + max(b)
    if kind == "head":
        return f"{HEAD_PREFIX}{list_head_seqs(LocalBackend(world.root))[-1]:016d}"
    if kind in ("config", "keycheck"):
        return kind
    raise AssertionError(kind)


def _sibling(world: World, key: str) -> str:
    prefix = {"data": PACK_PREFIX, "index": INDEX_PREFIX, "manifests": MANIFEST_PREFIX,
              "heads": HEAD_PREFIX}[key.split("/", 1)[0]]  # fmt: skip
    return next(k for k in world.keys_of(prefix) if k != key)


def inject(world: World, key: str, fault: Fault) -> None:
    path = world.path(key)
    if fault is Fault.FLIP:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif fault is Fault.TRUNCATE:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif fault is Fault.DELETE:
        path.unlink()
    elif fault is Fault.DUPLICATE:
        if key.startswith(HEAD_PREFIX):  # a copy that claims to be the next head
            seq = int(key[len(HEAD_PREFIX) :]) + 1
            dup = world.path(f"{HEAD_PREFIX}{seq:016d}")
        else:
            name = os.urandom(16).hex()
            if key.startswith(MANIFEST_PREFIX):
                name = key[len(MANIFEST_PREFIX) :][:23] + "-" + os.urandom(8).hex()
            dup = path.parent / name
        shutil.copyfile(path, dup)
    elif fault is Fault.SWAP:
        other = world.path(_sibling(world, key))
        a, b = path.read_bytes(), other.read_bytes()
        path.write_bytes(b)
        other.write_bytes(a)
    elif fault is Fault.STALE:
        if key.startswith(MANIFEST_PREFIX):  # a forgotten point's manifest put back
            mid, blob = world.stale_manifest
            world.path(MANIFEST_PREFIX + mid).write_bytes(blob)
        elif key.startswith(HEAD_PREFIX):  # an older head renamed to look like the newest
            older = world.keys_of(HEAD_PREFIX)[-2]
            path.write_bytes(world.path(older).read_bytes())
        else:
            raise AssertionError(f"no stale version of {key}")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = ["FAST_LOCKS", "Fault", "LockKind", "World", "build_world", "digest", "inject", "victim"]
