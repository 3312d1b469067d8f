"""The Swift backend against a real Swift all-in-one (lab/swift/up.sh), marked ``swift``.

These are the backend contract (base.py) checked on Swift, plus what only Swift has: the
container/prefix layout, token renewal, listing pagination, credentials kept out of
``describe()`` and errors. Without the lab they skip (developer) or fail (CI).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from tests.contract.swift_lab import backend_fixture, drop_container, fresh_backend, swift_env

from haven.datamover.backends import open_backend
from haven.datamover.backends import swift as swift_mod
from haven.datamover.backends.base import Backend, ObjectNotFound, TransientBackendError
from haven.datamover.backends.swift import SwiftAuthError, SwiftBackend, TempAuth, auth_from_env
from haven.datamover.errors import InvalidArgument

pytestmark = pytest.mark.swift


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return swift_env()


@pytest.fixture
def backend(env: dict[str, str]) -> Iterator[SwiftBackend]:
    yield from backend_fixture(env, prefix="repo/one")


def test_is_a_backend(backend: SwiftBackend) -> None:
    assert isinstance(backend, Backend)


def test_put_get_roundtrip_and_overwrite(backend: SwiftBackend) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    backend.put("data/ab/abcdef", data)
    assert backend.get("data/ab/abcdef") == data
    backend.put("data/ab/abcdef", memoryview(b"second"))
    assert backend.get("data/ab/abcdef") == b"second"
    assert backend.stat("data/ab/abcdef").size == 6
    backend.put("empty", b"")
    assert backend.get("empty") == b""


def test_missing_objects(backend: SwiftBackend) -> None:
    for call in (
        lambda: backend.get("nope"),
        lambda: backend.get_range("nope", 0, 10),
        lambda: backend.get_range("nope", 0, 0),
        lambda: backend.stat("nope"),
    ):
        with pytest.raises(ObjectNotFound):
            call()
    assert not backend.exists("nope")
    backend.delete("nope")  # idempotent


def test_get_range(backend: SwiftBackend) -> None:
    data = bytes(range(256)) * 40
    backend.put("packs/p1", data)
    assert backend.get_range("packs/p1", 0, 10) == data[:10]
    assert backend.get_range("packs/p1", 1000, 2000) == data[1000:3000]
    assert backend.get_range("packs/p1", len(data) - 5, 100) == data[-5:]
    assert backend.get_range("packs/p1", len(data), 10) == b""
    assert backend.get_range("packs/p1", 7, 0) == b""


def test_delete(backend: SwiftBackend) -> None:
    backend.put("locks/x", b"1")
    assert backend.exists("locks/x")
    backend.delete("locks/x")
    assert not backend.exists("locks/x")
    backend.delete("locks/x")


def test_list_prefix_and_pagination(backend: SwiftBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {f"data/{i:02x}/obj{i}" for i in range(23)} | {"index/i1", "config"}
    for k in keys:
        backend.put(k, k.encode())
    monkeypatch.setattr(swift_mod, "_LIST_PAGE", 5)  # force several pages
    assert {i.key for i in backend.list()} == keys
    assert {i.key for i in backend.list("data/")} == {k for k in keys if k.startswith("data/")}
    assert {i.key for i in backend.list("data/0")} == {k for k in keys if k.startswith("data/0")}
    assert {(i.key, i.size) for i in backend.list("index/")} == {("index/i1", 8)}
    assert list(backend.list("nothing/")) == []


def test_prefixes_are_isolated(env: dict[str, str], backend: SwiftBackend) -> None:
    other = SwiftBackend(backend.container, "repo/two", auth_from_env(env))
    try:
        backend.put("config", b"one")
        other.put("config", b"two")
        assert backend.get("config") == b"one"
        assert [i.key for i in other.list()] == ["config"]
    finally:
        other.close()


def test_list_of_missing_container_is_empty(env: dict[str, str]) -> None:
    b = fresh_backend(env)
    try:
        assert list(b.list()) == []
    finally:
        b.close()


def test_invalid_keys_rejected(backend: SwiftBackend) -> None:
    for key in ("", "../x", "a//b", "a/./b", "sp ace"):
        with pytest.raises(InvalidArgument):
            backend.put(key, b"x")


def test_expired_token_is_renewed(backend: SwiftBackend) -> None:
    backend.put("a", b"1")
    backend._token = "AUTH_tk" + "0" * 32  # as if it had expired
    assert backend.get("a") == b"1"
    assert backend._token != "AUTH_tk" + "0" * 32


def test_wrong_key_is_a_clear_non_retryable_error(env: dict[str, str]) -> None:
    secret = "definitely-wrong-key-XYZ"
    b = SwiftBackend(
        "haven-test-badkey", "", TempAuth(env["HAVEN_SWIFT_AUTH_URL"], "test:tester", secret)
    )
    try:
        with pytest.raises(SwiftAuthError) as info:
            b.get("x")
        assert not info.value.retryable
        assert secret not in str(info.value)
    finally:
        b.close()


def test_unreachable_swift_is_transient() -> None:
    b = SwiftBackend(
        "c", "", TempAuth("http://127.0.0.1:9/auth/v1.0", "u:u", "k"), connect_timeout=2
    )
    try:
        with pytest.raises(TransientBackendError):
            b.get("x")
    finally:
        b.close()


def test_no_credentials_in_describe_or_repr(env: dict[str, str], backend: SwiftBackend) -> None:
    key = env["HAVEN_SWIFT_KEY"]
    backend.put("x", b"1")
    for text in (backend.describe(), repr(backend), repr(backend.auth)):
        assert key not in text
        assert backend._token is not None and backend._token not in text
    assert backend.describe().startswith(f"swift://{backend.container}/repo/one")


def test_factory_opens_swift_urls(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    b = open_backend("swift://haven-test-factory/some/prefix")
    try:
        b.put("k", b"v")
        assert b.get("k") == b"v"
        assert "haven-test-factory/some/prefix" in b.describe()
        assert env["HAVEN_SWIFT_KEY"] not in b.describe()
    finally:
        inner = swift_mod.from_url("swift://haven-test-factory")
        drop_container(inner)
        inner.close()
        b.close()


def test_concurrent_puts_and_gets(backend: SwiftBackend) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                key = f"data/t{n}/o{i}"
                blob = f"{n}-{i}".encode() * 1000
                backend.put(key, blob)
                assert backend.get(key) == blob
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(list(backend.list("data/"))) == 80
