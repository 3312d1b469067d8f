from __future__ import annotations

import os
from pathlib import Path

import pytest

from haven.datamover import (
    FileSource,
    Repository,
    ScryptParams,
    backup_volume,
    check,
    decode_key_file,
    encode_key_file,
    new_master_key,
    restore_volume,
)
from haven.datamover.backends import LocalBackend, MemoryBackend
from haven.datamover.errors import KeyMissing, RepositoryCheckFailed, WrongKey
from haven.datamover.packs import PACK_PREFIX
from haven.domain.errors import IntegrityError, SecurityError

KiB = 1024
MARKER = b"HAVEN-MARKER-7f3a9c-do-not-leak"


def _backup(repo: Repository, path: Path, volume: str = "vol", **kw: object):  # type: ignore[no-untyped-def]
    with FileSource(path) as src:
        return backup_volume(repo, src, volume=volume, **kw)  # type: ignore[arg-type]


def test_check_clean(local_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    _backup(local_repo, image())
    report = check(local_repo, read_data=True)
    assert report.ok, report.problems
    assert report.manifests == 1 and report.packs >= 1 and report.bytes_read > 0


def test_missing_pack_names_affected_points(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    a = _backup(mem_repo, image(), volume="a", point_id="p1")
    b = _backup(mem_repo, image(regions=[(0, b"other" * 1000)]), volume="b", point_id="p1")
    backend = mem_repo.backend
    assert isinstance(backend, MemoryBackend)
    loc = mem_repo.index.get(next(iter(a.manifest.referenced() - b.manifest.referenced())))
    assert loc is not None
    del backend.objects[f"{PACK_PREFIX}{loc.pack_id[:2]}/{loc.pack_id}"]
    report = check(mem_repo)
    assert not report.ok
    assert any(a.manifest.manifest_id in p for p in report.affected_points)
    assert any("a@p1" in p for p in report.affected_points)
    with pytest.raises(RepositoryCheckFailed) as info:
        report.raise_for_problems()
    assert info.value.exit_code == 6
    assert "a@p1" in str(info.value)


def test_tampered_pack_detected_and_never_restored(
    mem_repo: Repository, image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    res = _backup(mem_repo, image(size=256 * KiB, regions=[(0, os.urandom(256 * KiB))]))
    backend = mem_repo.backend
    assert isinstance(backend, MemoryBackend)
    key = next(k for k in backend.objects if k.startswith(PACK_PREFIX))
    blob = bytearray(backend.objects[key])
    blob[len(blob) // 3] ^= 0x40
    backend.objects[key] = bytes(blob)
    assert check(mem_repo).ok  # structure alone cannot see it
    report = check(mem_repo, read_data=True)
    assert not report.ok
    assert any(res.manifest.manifest_id in p for p in report.affected_points)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError):
        restore_volume(mem_repo, res.manifest, out)


def test_tampered_manifest_detected(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    res = _backup(mem_repo, image())
    backend = mem_repo.backend
    assert isinstance(backend, MemoryBackend)
    key = f"manifests/{res.manifest.manifest_id}"
    backend.objects[key] = backend.objects[key][:-1] + b"\x00"
    with pytest.raises(IntegrityError):
        mem_repo.load_manifest(res.manifest.manifest_id)
    assert not check(mem_repo).ok


def test_no_plaintext_marker_in_repository(tmp_path: Path, image) -> None:  # type: ignore[no-untyped-def]
    backend = LocalBackend(tmp_path / "repo")
    repo = Repository.init(
        backend,
        password="pw",
        chunk_size=64 * KiB,
        pack_size=256 * KiB,
        scrypt=ScryptParams(log_n=10),
    )
    text = (b"lorem ipsum " * 500 + MARKER + b"\n") * 40  # compressible and not
    img = image(regions=[(0, text), (700 * KiB, os.urandom(1000) + MARKER), (1500 * KiB, MARKER)])
    _backup(repo, img, volume="marker-volume", point_id="marker-point")
    files = [p for p in (tmp_path / "repo").rglob("*") if p.is_file()]
    assert len(files) >= 4
    for path in files:
        raw = path.read_bytes()
        assert MARKER not in raw, path
        assert MARKER[:12] not in raw, path
        assert b"lorem ipsum" not in raw, path
        assert b"marker-volume" not in raw and b"marker-point" not in raw, path


def test_wrong_passphrase_is_clear_security_error(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "repo")
    Repository.init(backend, password="right", scrypt=ScryptParams(log_n=10))
    assert Repository.open(backend, password="right").config.chunk_size == 1 << 20
    with pytest.raises(WrongKey) as info:
        Repository.open(backend, password="wrong")
    assert isinstance(info.value, SecurityError) and info.value.exit_code == 7
    assert "passphrase" in str(info.value) and "wrong" in str(info.value)
    with pytest.raises(KeyMissing):
        Repository.open(backend)


def test_key_file_repository(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "repo")
    master = new_master_key()
    keyfile = tmp_path / "key"
    keyfile.write_text(encode_key_file(master))
    Repository.init(backend, master_key=master)
    assert not list(backend.list("keys/"))
    Repository.open(backend, master_key=decode_key_file(keyfile.read_text()))
    with pytest.raises(WrongKey):
        Repository.open(backend, master_key=new_master_key())
    with pytest.raises(KeyMissing):
        Repository.open(backend, password="x")


def test_corrupt_index_still_opens_and_check_names_points(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    res = _backup(mem_repo, image(), volume="v", point_id="p")
    backend = mem_repo.backend
    assert isinstance(backend, MemoryBackend)
    for key in [k for k in backend.objects if k.startswith("index/")]:
        backend.objects[key] = b"garbage" * 10
    again = Repository(backend, mem_repo.keys, mem_repo.config)
    again.reload_index()
    assert again.index_problems and len(again.index) == 0
    report = check(again)
    assert not report.ok
    assert any(res.manifest.manifest_id in p and "v@p" in p for p in report.affected_points)


def test_missing_pack_on_restore_is_integrity_error(
    mem_repo: Repository, image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    res = _backup(mem_repo, image())
    backend = mem_repo.backend
    assert isinstance(backend, MemoryBackend)
    for key in [k for k in backend.objects if k.startswith(PACK_PREFIX)]:
        del backend.objects[key]
    with pytest.raises(IntegrityError):
        restore_volume(mem_repo, res.manifest, tmp_path / "o")
