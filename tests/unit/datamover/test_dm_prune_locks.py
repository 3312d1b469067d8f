from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest

from haven.datamover import (
    FileSource,
    LockKind,
    Repository,
    RetentionPolicy,
    backup_volume,
    check,
    prune,
    restore_volume,
)
from haven.datamover.backends import LocalBackend, MemoryBackend
from haven.datamover.codec import encode_chunk
from haven.datamover.errors import ManifestNotFound, PruneRefused, RepositoryLocked
from haven.datamover.locks import LOCK_PREFIX, LockPolicy, RepoLock
from haven.datamover.packs import INDEX_PREFIX, PACK_PREFIX, PackBuilder, pack_key

KiB = 1024


def _backup(repo: Repository, path: Path, volume: str = "vol", **kw: object):  # type: ignore[no-untyped-def]
    with FileSource(path) as src:
        return backup_volume(repo, src, volume=volume, **kw)  # type: ignore[arg-type]


def _packs(repo: Repository) -> set[str]:
    return {i.key for i in repo.backend.list(PACK_PREFIX)}


def test_prune_forgets_and_collects(mem_repo: Repository, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    imgs = [image(size=512 * KiB, regions=[(0, os.urandom(512 * KiB))]) for _ in range(3)]
    results = [_backup(mem_repo, p) for p in imgs]
    before = _packs(mem_repo)
    dry = prune(mem_repo, RetentionPolicy(keep_last=1), dry_run=True)
    assert len(dry.forgotten) == 2 and _packs(mem_repo) == before
    stats = prune(mem_repo, RetentionPolicy(keep_last=1))
    assert stats.forgotten == [r.manifest.manifest_id for r in results[:2]]
    assert stats.packs_deleted >= 2
    assert len(_packs(mem_repo)) < len(before)
    assert check(mem_repo, read_data=True).ok
    restore_volume(mem_repo, results[2].manifest, tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == imgs[2].read_bytes()


def test_prune_repacks_mostly_empty_packs(mem_repo: Repository, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # one backup fills whole packs; the next keeps only 1 chunk in 8 of them
    data = bytearray(os.urandom(1024 * KiB))
    img = image(size=len(data), regions=[(0, bytes(data))])
    _backup(mem_repo, img)
    for i in range(0, 16):
        if i % 8:
            data[i * 64 * KiB : i * 64 * KiB + 8] = os.urandom(8)
    img2 = image(size=len(data), regions=[(0, bytes(data))])
    keep = _backup(mem_repo, img2)
    stats = prune(mem_repo, RetentionPolicy(keep_last=1))
    assert stats.packs_repacked >= 1 and stats.packs_written >= 1
    assert check(mem_repo, read_data=True).ok
    restore_volume(mem_repo, keep.manifest, tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == bytes(data)
    # a second prune finds nothing left to do
    again = prune(mem_repo, RetentionPolicy(keep_last=1))
    assert again.packs_deleted == again.packs_repacked == 0


def test_prune_removes_orphan_packs(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    _backup(mem_repo, image())
    # a writer that crashed between its pack and its index: chunks no point references
    builder = PackBuilder(mem_repo.keys, mem_repo.config.pack_size)
    data = os.urandom(1000)
    cid = mem_repo.keys.chunk_id(data)
    builder.add(cid, encode_chunk(mem_repo.keys, cid, memoryview(data), 1))
    sealed = builder.flush()
    assert sealed is not None
    mem_repo.backend.put(pack_key(sealed.pack_id), bytes(sealed.data))
    assert check(mem_repo).ok and check(mem_repo).warnings
    stats = prune(mem_repo)
    assert stats.orphan_packs_deleted == 1
    assert not mem_repo.backend.exists(pack_key(sealed.pack_id))
    assert check(mem_repo, read_data=True).ok


def test_prune_refuses_when_a_live_pack_lost_its_index(
    mem_repo: Repository, image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The data-loss bug of the old prune: with one index gone, the pack it described
    looked like an orphan and was deleted although live points needed it."""
    img = image()
    _backup(mem_repo, img)
    backend = mem_repo.backend
    assert isinstance(backend, MemoryBackend)
    victim = next(k for k in backend.objects if k.startswith(INDEX_PREFIX))
    del backend.objects[victim]
    before = set(backend.objects)
    with pytest.raises(PruneRefused) as info:
        prune(mem_repo)
    assert info.value.exit_code == 6 and "haven repo repair" in str(info.value)
    assert set(backend.objects) - {k for k in backend.objects if k.startswith("locks/")} == {
        k for k in before if not k.startswith("locks/")
    }
    with pytest.raises(PruneRefused):  # naming something that is not damaged
        prune(mem_repo, forget_damaged=["data/00/0000"])


def test_exclusive_lock_blocks_backup_until_released(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    img = image()
    lock = mem_repo.lock(LockKind.EXCLUSIVE)
    done = threading.Event()
    t = threading.Thread(target=lambda: (_backup(mem_repo, img), done.set()))
    t.start()
    time.sleep(0.3)
    assert not done.is_set()
    lock.release()
    t.join(10)
    assert done.is_set()


def test_lock_wait_times_out(mem_repo: Repository) -> None:
    with mem_repo.lock(LockKind.SHARED):
        mem_repo.lock_policy = LockPolicy(wait=0.2, retry_min=0.01, retry_max=0.05)
        with pytest.raises(RepositoryLocked) as info:
            mem_repo.lock(LockKind.EXCLUSIVE)
        assert info.value.retryable and info.value.exit_code == 4
        mem_repo.lock(LockKind.SHARED).release()  # shared locks coexist


def test_stale_lock_of_dead_process_is_removed(mem_repo: Repository) -> None:
    lock = RepoLock(mem_repo.backend, mem_repo.keys, LockKind.EXCLUSIVE, mem_repo.lock_policy)
    lock._write()
    # rewrite it as if a dead process on this host held it
    import json

    from haven.datamover.locks import _ad

    dead = 2**22 + 12345
    doc = {
        "kind": "exclusive",
        "host": os.uname().nodename,
        "pid": dead,
        "created": time.time(),
        "refreshed": time.time(),
    }
    mem_repo.backend.put(
        lock.key, mem_repo.keys.seal_meta(json.dumps(doc).encode(), _ad(lock.lock_id))
    )
    with mem_repo.lock(LockKind.SHARED):
        pass
    assert not list(mem_repo.backend.list(LOCK_PREFIX))


def test_lost_lock_refuses_commit(mem_repo: Repository) -> None:
    lock = mem_repo.lock(LockKind.SHARED)
    mem_repo.backend.delete(lock.key)
    with pytest.raises(RepositoryLocked):
        lock.ensure_held()
    lock.release()


@pytest.mark.slow
def test_concurrent_backup_and_prune_then_restore_everything(
    tmp_path: Path, repo_factory, image
) -> None:  # type: ignore[no-untyped-def]
    """Backups of rotating contents (re-using chunks of points prune is forgetting) run
    against a prune loop; every surviving point must restore bit-for-bit."""
    base = repo_factory(LocalBackend(tmp_path / "repo", fsync=False))
    master_keys = base.keys
    contents = [bytes(os.urandom(384 * KiB)) for _ in range(4)]
    expected: dict[str, str] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def open_repo() -> Repository:
        repo = Repository(base.backend, master_keys, base.config)
        repo.lock_policy = base.lock_policy
        return repo

    def backer(worker: int) -> None:
        repo = open_repo()
        rnd = random.Random(worker)
        try:
            for n in range(8):
                a, b = rnd.sample(range(4), 2)
                data = contents[a][: 192 * KiB] + contents[b][192 * KiB :]
                img = image(size=len(data), regions=[(0, data)])
                res = _backup(repo, img, volume=f"v{worker % 2}", point_id=f"{worker}-{n}")
                expected[res.manifest.manifest_id] = hashlib.sha256(data).hexdigest()
        except BaseException as exc:
            errors.append(exc)

    def pruner() -> None:
        repo = open_repo()
        try:
            while not stop.is_set():
                prune(repo, RetentionPolicy(keep_last=1), repack_threshold=0.7)
                time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=backer, args=(w,)) for w in range(3)]
    p = threading.Thread(target=pruner)
    p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    p.join(30)
    assert not errors, errors
    repo = open_repo()
    repo.reload_index()
    survivors = repo.manifests()
    assert 2 <= len(survivors) <= len(expected)
    assert check(repo, read_data=True).ok
    for m in survivors:
        out = tmp_path / f"restore-{m.manifest_id}"
        restore_volume(repo, m, out)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == expected[m.manifest_id]


def test_prune_forgets_named_points(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    img = image()
    a = _backup(mem_repo, img)
    b = _backup(mem_repo, img)
    stats = prune(mem_repo, forget_ids=[a.manifest.manifest_id])
    assert stats.forgotten == [a.manifest.manifest_id]
    assert [m.manifest_id for m in mem_repo.manifests()] == [b.manifest.manifest_id]
    with pytest.raises(ManifestNotFound):
        prune(mem_repo, forget_ids=["nope"])


def test_cbt_parent_pruned_before_backup_locks(mem_repo: Repository, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The engine loads the parent manifest before backup_volume takes its lock; if the
    parent is forgotten and pruned in between, its chunks must be re-read, not reused."""
    data = os.urandom(512 * KiB)
    img = image(size=len(data), regions=[(0, data)])
    parent = _backup(mem_repo, img).manifest
    prune(mem_repo, forget_ids=[parent.manifest_id])
    assert len(mem_repo.index) == 0
    res = _backup(mem_repo, img, parent=parent, changed=[])
    assert res.stats.chunks_from_parent == 0 and res.stats.chunks_read == 8
    restore_volume(mem_repo, res.manifest, tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == data


def test_lock_settle_delays_listing(mem_repo: Repository) -> None:
    mem_repo.lock_policy = LockPolicy(settle=0.2)
    start = time.monotonic()
    with mem_repo.lock(LockKind.SHARED):
        assert time.monotonic() - start >= 0.2
