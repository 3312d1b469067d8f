"""The storage backend contract (haven.datamover.backends.base), run against every
backend in ``BACKENDS`` (see conftest.py), plus an end-to-end repository round trip."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from haven.datamover import Repository, backup_volume, check, new_master_key, restore_volume
from haven.datamover.backends import Backend, ObjectNotFound


def test_is_a_backend(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(backend.describe(), str) and backend.describe()


def test_put_get_roundtrip_and_replace(backend: Backend) -> None:
    backend.put("data/ab/object-1", b"hello")
    assert backend.get("data/ab/object-1") == b"hello"
    backend.put("data/ab/object-1", memoryview(b"replaced!"))
    assert backend.get("data/ab/object-1") == b"replaced!"
    assert backend.stat("data/ab/object-1").size == 9


def test_binary_and_empty_objects(backend: Backend) -> None:
    blob = os.urandom(3 * 1024 * 1024 + 17)
    backend.put("big.bin", blob)
    assert backend.get("big.bin") == blob
    backend.put("empty", b"")
    assert backend.get("empty") == b""
    assert backend.stat("empty").size == 0


def test_get_range(backend: Backend) -> None:
    blob = bytes(range(256)) * 100
    backend.put("r/obj", blob)
    assert backend.get_range("r/obj", 0, 10) == blob[:10]
    assert backend.get_range("r/obj", 1000, 500) == blob[1000:1500]
    assert backend.get_range("r/obj", len(blob) - 5, 5) == blob[-5:]


def test_missing_objects(backend: Backend) -> None:
    for call in (
        lambda: backend.get("nope/x"),
        lambda: backend.get_range("nope/x", 0, 1),
        lambda: backend.stat("nope/x"),
    ):
        with pytest.raises(ObjectNotFound) as info:
            call()
        assert info.value.key == "nope/x"
    assert not backend.exists("nope/x")
    backend.delete("nope/x")  # idempotent


def test_exists_and_delete(backend: Backend) -> None:
    backend.put("locks/l1", b"1")
    assert backend.exists("locks/l1")
    backend.delete("locks/l1")
    assert not backend.exists("locks/l1")
    with pytest.raises(ObjectNotFound):
        backend.get("locks/l1")


def test_list_by_prefix_with_sizes(backend: Backend) -> None:
    backend.put("index/aa", b"12")
    backend.put("index/bb", b"123")
    backend.put("data/aa/aa11", b"1")
    backend.put("data/bb/bb22", b"1234")
    backend.put("config", b"c")
    assert {(i.key, i.size) for i in backend.list("index/")} == {("index/aa", 2), ("index/bb", 3)}
    assert {i.key for i in backend.list("data/")} == {"data/aa/aa11", "data/bb/bb22"}
    assert {i.key for i in backend.list("data/aa/")} == {"data/aa/aa11"}
    assert len({i.key for i in backend.list()}) == 5
    assert list(backend.list("manifests/")) == []


def test_concurrent_puts_are_atomic(backend: Backend) -> None:
    payloads = {f"data/cc/obj{i}": bytes([i]) * (200_000 + i) for i in range(16)}

    def writer(key: str, data: bytes) -> None:
        for _ in range(3):
            backend.put(key, data)
            got = backend.get(key)
            assert got == data

    threads = [threading.Thread(target=writer, args=kv) for kv in payloads.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key, data in payloads.items():
        assert backend.get(key) == data


def test_repository_roundtrip_on_backend(backend: Backend, tmp_path: Path) -> None:
    repo = Repository.init(
        backend, master_key=new_master_key(), chunk_size=65536, pack_size=200_000
    )
    data = os.urandom(300_000) + bytes(200_000) + b"text " * 50_000

    class Src:
        size = len(data)

        def readinto(self, offset: int, buf: memoryview) -> int:
            part = data[offset : offset + len(buf)]
            buf[: len(part)] = part
            return len(part)

    res = backup_volume(repo, Src(), volume="contract")
    assert check(repo, read_data=True).ok
    restore_volume(repo, res.manifest.manifest_id, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
