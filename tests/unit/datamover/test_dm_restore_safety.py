"""Restore can neither destroy what it replaces nor report a false verification.

A path is restored into a temporary file next to it that replaces it only after what
was written has been read back and verified; targets written in place have every
written chunk read back. Targets that corrupt what they store (wrappers over real
files) and repositories with a damaged pack must make restore fail with an integrity
error (exit 6) and leave the destination as it was."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from haven.cli.main import app
from haven.datamover import (
    FileSource,
    FileTarget,
    Progress,
    Repository,
    backup_volume,
    restore_volume,
)
from haven.datamover.backup import BackupResult
from haven.datamover.blockio import STAGING_MARK, DataExtents, staging_name
from haven.datamover.errors import ChecksumMismatch, CorruptObject, VolumeIOError
from haven.domain.errors import IntegrityError
from haven.domain.extents import Extent

KiB = 1024
CHUNK = 64 * KiB
SIZE = 1024 * KiB  # 16 chunks


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _backup(repo: Repository, path: Path) -> BackupResult:
    with FileSource(path) as src:
        return backup_volume(repo, src, volume="vol", workers=2)


def _volume(image: Callable[..., Path]) -> Path:
    """Random data in chunks 0-9, zeros in 10-12, random again in 13-15."""
    return image(
        size=SIZE, regions=[(0, os.urandom(10 * CHUNK)), (13 * CHUNK, os.urandom(3 * CHUNK))]
    )


def _damage_a_pack(repo_dir: Path) -> None:
    pack = next(p for p in sorted((repo_dir / "data").rglob("*")) if p.is_file())
    raw = bytearray(pack.read_bytes())
    raw[200] ^= 0x01  # inside the first blob
    pack.write_bytes(bytes(raw))


class CorruptingTarget:
    """A BlockTarget over a real FileTarget that stores what it is given with one bit
    flipped at volume offset ``at`` (when a write covers it), and returns on read what
    it stored: a disk that silently corrupts a write."""

    def __init__(self, inner: FileTarget, at: int, *, fresh: bool | None = None) -> None:
        self.inner, self.at = inner, at
        self._fresh = inner.fresh if fresh is None else fresh

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def fresh(self) -> bool:
        return self._fresh

    def readinto(self, offset: int, buf: memoryview) -> int:
        return self.inner.readinto(offset, buf)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if offset <= self.at < offset + len(data):
            stored = bytearray(data)
            stored[self.at - offset] ^= 0x10
            data = stored
        self.inner.write(offset, data)

    def zero(self, offset: int, length: int) -> None:
        self.inner.zero(offset, length)

    def flush(self) -> None:
        self.inner.flush()


class WithDataExtents(CorruptingTarget):
    """Also reports where it may hold data (haven.datamover.blockio.DataExtents)."""

    def data_extents(self, offset: int, length: int) -> list[Extent]:
        return self.inner.data_extents(offset, length)


class IgnoresZero(CorruptingTarget):
    """Acknowledges ``zero`` without doing it."""

    def zero(self, offset: int, length: int) -> None:
        return None


def test_corrupting_fresh_target_fails_with_exit_6(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    point = _backup(mem_repo, _volume(image))
    with FileTarget(tmp_path / "t", SIZE) as inner:
        target = CorruptingTarget(inner, at=5 * CHUNK + 123)
        with pytest.raises(ChecksumMismatch) as info:
            restore_volume(mem_repo, point.manifest, target)
    err = info.value
    assert isinstance(err, IntegrityError) and err.exit_code == 6
    assert "volume vol" in str(err) and f"offset {5 * CHUNK} " in str(err)


def test_corrupting_target_in_place_fails_with_exit_6(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    point = _backup(mem_repo, _volume(image))
    replica = tmp_path / "replica"
    replica.write_bytes(os.urandom(SIZE))  # an older copy: every chunk differs
    with FileTarget(replica, SIZE, existing=True) as inner:
        target = CorruptingTarget(inner, at=3 * CHUNK + 7)
        assert not target.fresh
        with pytest.raises(ChecksumMismatch) as info:
            restore_volume(mem_repo, point.manifest, target, into_existing=True)
    assert info.value.exit_code == 6
    assert "volume vol" in str(info.value) and f"offset {3 * CHUNK} " in str(info.value)


def test_in_place_zero_that_does_nothing_is_caught(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    img = _volume(image)
    point = _backup(mem_repo, img)
    replica = tmp_path / "replica"
    data = bytearray(img.read_bytes())
    data[11 * CHUNK : 12 * CHUNK] = b"x" * CHUNK  # chunk 11 is zero in the volume
    replica.write_bytes(bytes(data))
    with (
        FileTarget(replica, SIZE, existing=True) as inner,
        pytest.raises(ChecksumMismatch) as info,
    ):
        restore_volume(mem_repo, point.manifest, IgnoresZero(inner, at=-1))
    assert f"offset {11 * CHUNK} " in str(info.value)


def test_fresh_target_that_does_not_read_as_zeros_is_caught(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    """Zero chunks of a fresh target are not written; verification still reads those
    that the target says may hold data."""
    point = _backup(mem_repo, _volume(image))
    dirty = tmp_path / "dirty"
    dirty.write_bytes(os.urandom(SIZE))
    with FileTarget(dirty, SIZE, existing=True) as inner:
        liar = WithDataExtents(inner, at=-1, fresh=True)
        assert isinstance(liar, DataExtents)
        with pytest.raises(ChecksumMismatch) as info:
            restore_volume(mem_repo, point.manifest, liar)
    assert f"offset {10 * CHUNK} " in str(info.value)


@pytest.mark.parametrize("where", ["run", "hole"])
def test_corrupting_write_to_a_path_keeps_the_destination(
    local_repo: Repository,
    image: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """A path restore (runs written from aligned buffers, zero chunks left as holes)
    reads back what it wrote: a file system that corrupts a written run, or puts data
    where a hole should be, fails the restore."""
    point = _backup(local_repo, _volume(image))
    dest_dir = tmp_path / "dst"
    dest_dir.mkdir()
    dest = dest_dir / "disk.img"
    dest.write_bytes(os.urandom(SIZE // 2))
    before = _digest(dest)
    original = FileTarget.write_buffer
    bad = 4 * CHUNK + 9 if where == "run" else 11 * CHUNK + 9  # chunk 11 is zero

    def corrupting(self: FileTarget, offset: int, buf, length: int) -> None:  # type: ignore[no-untyped-def]
        original(self, offset, buf, length)
        if offset == 0:  # the first run (chunks 0-9), written before chunks 10-12 are checked
            os.pwrite(self.fd, b"\x01" if where == "hole" else bytes([buf[bad] ^ 1]), bad)

    monkeypatch.setattr(FileTarget, "write_buffer", corrupting)
    with pytest.raises(ChecksumMismatch) as info:
        restore_volume(local_repo, point.manifest, dest, workers=1)
    assert info.value.exit_code == 6
    assert f"offset {bad - 9} " in str(info.value)
    assert _digest(dest) == before
    assert os.listdir(dest_dir) == ["disk.img"]


def test_damaged_pack_leaves_existing_file_identical(
    local_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    point = _backup(local_repo, _volume(image))
    _damage_a_pack(tmp_path / "repo")
    dest_dir = tmp_path / "dst"
    dest_dir.mkdir()
    dest = dest_dir / "disk.img"
    dest.write_bytes(os.urandom(3 * SIZE))  # what was there: another, larger volume
    before = _digest(dest)
    with pytest.raises(CorruptObject) as info:
        restore_volume(local_repo, point.manifest, dest)
    assert info.value.exit_code == 6
    assert _digest(dest) == before
    assert os.listdir(dest_dir) == ["disk.img"]


def test_checksum_mismatch_leaves_destination_absent(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    """The volume checksum is checked before the temporary file replaces anything."""
    point = _backup(mem_repo, _volume(image))
    wrong = replace(point.manifest, checksum="00" * 32)
    dest = tmp_path / "dst"
    dest.mkdir()
    with pytest.raises(ChecksumMismatch):
        restore_volume(mem_repo, wrong, dest / "disk.img")
    assert os.listdir(dest) == []


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_interrupted_restore_removes_temporary_file(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path, fault: type[BaseException]
) -> None:
    point = _backup(mem_repo, _volume(image))
    dest = tmp_path / "dst"
    dest.mkdir()
    (dest / "disk.img").write_bytes(b"old contents")

    def stop(p: Progress) -> None:  # called after the first run is on disk
        if p.bytes_done < p.bytes_total:
            raise fault(5, "Input/output error") if fault is OSError else fault()

    expected: type[BaseException] = VolumeIOError if fault is OSError else KeyboardInterrupt
    with pytest.raises(expected):
        restore_volume(mem_repo, point.manifest, dest / "disk.img", progress=stop, workers=1)
    assert (dest / "disk.img").read_bytes() == b"old contents"
    assert os.listdir(dest) == ["disk.img"]


def test_successful_restore_replaces_existing_file_atomically(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    img = _volume(image)
    point = _backup(mem_repo, img)
    dest_dir = tmp_path / "dst"
    dest_dir.mkdir()
    dest = dest_dir / "disk.img"
    old = os.urandom(3 * SIZE)
    dest.write_bytes(old)
    os.chmod(dest, 0o640)
    old_inode = dest.stat().st_ino
    with open(dest, "rb") as held:  # a reader of the old file keeps seeing the old file
        st = restore_volume(mem_repo, point.manifest, dest)
        assert held.read() == old
    assert st.verified
    assert dest.read_bytes() == img.read_bytes()
    assert dest.stat().st_ino != old_inode  # replaced by rename, not rewritten
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640  # the destination's permissions
    assert os.listdir(dest_dir) == ["disk.img"]


def test_new_file_is_private_and_sparse(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    img = _volume(image)
    point = _backup(mem_repo, img)
    dest = tmp_path / "dst"
    dest.mkdir()
    st = restore_volume(mem_repo, point.manifest, dest / "new.img")
    assert st.verified and (dest / "new.img").read_bytes() == img.read_bytes()
    assert stat.S_IMODE((dest / "new.img").stat().st_mode) == 0o600
    assert os.listdir(dest) == ["new.img"]
    assert restore_volume(mem_repo, point.manifest, dest / "n2", verify=False).verified is False


def test_symlink_destination_keeps_pointing_at_the_restored_file(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    img = _volume(image)
    point = _backup(mem_repo, img)
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    real = tmp_path / "real" / "disk.img"
    real.write_bytes(b"old")
    link = tmp_path / "links" / "disk"
    link.symlink_to(real)
    restore_volume(mem_repo, point.manifest, link)
    assert link.is_symlink() and real.read_bytes() == img.read_bytes()
    assert os.listdir(tmp_path / "real") == ["disk.img"]
    assert os.listdir(tmp_path / "links") == ["disk"]


def test_special_files_are_not_replaced(
    mem_repo: Repository, image: Callable[..., Path], tmp_path: Path
) -> None:
    """Not a regular file: written in place (a block device) or refused, never renamed
    over."""
    point = _backup(mem_repo, _volume(image))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(VolumeIOError):
        restore_volume(mem_repo, point.manifest, fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    directory = tmp_path / "dir"
    directory.mkdir()
    with pytest.raises(VolumeIOError):
        restore_volume(mem_repo, point.manifest, directory)
    assert directory.is_dir() and os.listdir(directory) == []
    assert sorted(os.listdir(tmp_path)) == sorted(["dir", "fifo", "img0"])


def test_staging_name_is_hidden_unique_and_fits() -> None:
    a, b = staging_name("disk.img"), staging_name("disk.img")
    assert a != b and a.startswith(".disk.img" + STAGING_MARK)
    long = staging_name("é" * 200)  # 400 bytes in UTF-8
    assert len(os.fsencode(long)) <= 255 and STAGING_MARK in long


# --- through the CLI ---------------------------------------------------------------

runner = CliRunner()


def _cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout


@pytest.fixture
def cli_repo(tmp_path: Path, image: Callable[..., Path]) -> tuple[list[str], Path]:
    """A local repository (key file) with volume ``disk``; returns (options, image)."""
    opts = ["--repo", str(tmp_path / "repo"), "--key-file", str(tmp_path / "key")]
    code, out = _cli("repo", "init", *opts, "--chunk-size", "64KiB", "--json")
    assert code == 0, out
    img = _volume(image)
    code, out = _cli("volume", "backup", str(img), "--volume", "disk", *opts, "--json")
    assert code == 0, out
    return opts, img


def test_cli_restore_from_damaged_pack_exit_6_keeps_file(
    cli_repo: tuple[list[str], Path], tmp_path: Path
) -> None:
    opts, _ = cli_repo
    _damage_a_pack(tmp_path / "repo")
    dest_dir = tmp_path / "dst"
    dest_dir.mkdir()
    dest = dest_dir / "disk.img"
    dest.write_bytes(os.urandom(SIZE))
    before = _digest(dest)
    code, _ = _cli("volume", "restore", "disk", str(dest), *opts)
    assert code == 6
    code, out = _cli("volume", "restore", "disk", str(dest), *opts, "--json")
    assert code == 6
    doc = json.loads(out)  # exactly one JSON document
    assert doc["error"]["exit_code"] == 6 and doc["error"]["type"] == "CorruptObject"
    assert _digest(dest) == before
    assert os.listdir(dest_dir) == ["disk.img"]


def test_cli_restore_replaces_existing_file(
    cli_repo: tuple[list[str], Path], tmp_path: Path
) -> None:
    opts, img = cli_repo
    dest = tmp_path / "dst"
    dest.mkdir()
    (dest / "disk.img").write_bytes(os.urandom(2 * SIZE))
    code, out = _cli("volume", "restore", "disk", str(dest / "disk.img"), *opts, "--json")
    assert code == 0, out
    assert json.loads(out)["stats"]["verified"] is True
    assert (dest / "disk.img").read_bytes() == img.read_bytes()
    assert os.listdir(dest) == ["disk.img"]
