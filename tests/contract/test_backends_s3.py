"""The S3 backend against a real S3 endpoint: the Swift lab's s3api (lab/swift/up.sh),
marked ``swift``. The shared contract runs in test_backends.py (parameters ``s3`` and
``s3-retrying``); here is what only S3 has: the bucket/prefix layout, bucket creation
with the lab's (non-default) region, ListObjectsV2 pagination by continuation token,
credentials used from ``open_backend(..., credentials=...)``, and refusals (wrong key,
region, clock) that never show the secret. Without the lab: skip (developer), fail (CI).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tests.support.s3_lab import backend_fixture, drop_bucket, fresh_backend, s3_env, settings

from haven.datamover.backends import Backend, RetryingBackend, open_backend
from haven.datamover.backends import s3 as s3_mod
from haven.datamover.backends.base import BackendError, ObjectNotFound, TransientBackendError
from haven.datamover.backends.s3 import S3AuthError, S3Backend, S3Settings, error_code
from haven.datamover.backends.sigv4 import Credentials
from haven.datamover.errors import InvalidArgument

pytestmark = pytest.mark.swift


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return s3_env()


@pytest.fixture
def backend(env: dict[str, str]) -> Iterator[S3Backend]:
    yield from backend_fixture(env, prefix="repo/one")


def with_secret(env: dict[str, str], secret: str, **other: str) -> S3Settings:
    base = settings(env)
    return S3Settings(
        endpoint=other.get("endpoint", base.endpoint),
        credentials=Credentials(base.credentials.access_key, secret),
        region=other.get("region", base.region),
    )


def test_lab_uses_a_region_other_than_the_default(env: dict[str, str]) -> None:
    # so that bucket creation sends a LocationConstraint and every request signs it
    assert settings(env).region not in ("", "us-east-1")


def test_objects_are_named_prefix_slash_key_in_the_bucket(backend: S3Backend) -> None:
    backend.put("data/ab/abcdef", b"x")
    whole = S3Backend(backend.bucket, "", backend.settings)
    try:
        assert [i.key for i in whole.list()] == ["repo/one/data/ab/abcdef"]
        assert whole.get("repo/one/data/ab/abcdef") == b"x"
    finally:
        whole.close()


def test_large_memoryview_is_streamed_and_verified(backend: S3Backend) -> None:
    blob = os.urandom(5 * 1024 * 1024 + 3)  # several 1 MiB pieces
    backend.put("packs/big", memoryview(blob))
    assert hashlib.sha256(backend.get("packs/big")).digest() == hashlib.sha256(blob).digest()
    assert backend.stat("packs/big").size == len(blob)


def test_get_range_edges(backend: S3Backend) -> None:
    data = bytes(range(256)) * 40
    backend.put("packs/p1", data)
    assert backend.get_range("packs/p1", 1000, 2000) == data[1000:3000]
    assert backend.get_range("packs/p1", len(data) - 5, 100) == data[-5:]
    assert backend.get_range("packs/p1", len(data), 10) == b""
    assert backend.get_range("packs/p1", 7, 0) == b""
    with pytest.raises(ObjectNotFound):
        backend.get_range("nope", 0, 0)
    backend.put("empty", b"")
    assert backend.get_range("empty", 0, 10) == b""


def test_list_pagination_by_continuation_token(
    backend: S3Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {f"data/{i:02x}/obj{i}" for i in range(23)} | {"index/i1", "config"}
    for k in keys:
        backend.put(k, k.encode())
    requests: list[httpx.Request] = []
    monkeypatch.setattr(s3_mod, "_LIST_PAGE", 5)  # force several pages
    backend._client.event_hooks["request"].append(requests.append)
    assert {i.key for i in backend.list()} == keys
    tokens = [r.url.params.get("continuation-token") for r in requests]
    assert len(requests) == 5 and tokens[0] is None and all(tokens[1:])
    # the server's tokens (base64) need percent-encoding: signed and sent alike
    assert any("%" in r.url.query.decode() for r in requests[1:])
    assert {i.key for i in backend.list("data/")} == {k for k in keys if k.startswith("data/")}
    assert {i.key for i in backend.list("data/0")} == {k for k in keys if k.startswith("data/0")}
    assert {(i.key, i.size) for i in backend.list("index/")} == {("index/i1", 8)}
    assert list(backend.list("nothing/")) == []


def test_prefixes_are_isolated(backend: S3Backend) -> None:
    other = S3Backend(backend.bucket, "repo/two", backend.settings)
    try:
        backend.put("config", b"one")
        other.put("config", b"two")
        assert backend.get("config") == b"one"
        assert [i.key for i in other.list()] == ["config"]
    finally:
        other.close()


def test_missing_bucket_reads_as_empty_and_is_created_by_the_first_put(
    env: dict[str, str],
) -> None:
    b = fresh_backend(env)
    try:
        assert list(b.list()) == []
        assert not b.exists("config")
        with pytest.raises(ObjectNotFound):
            b.get("config")
        b.delete("config")  # idempotent, even without a bucket
        b.put("config", b"c")  # creates the bucket (LocationConstraint = lab region)
        assert b.get("config") == b"c"
    finally:
        drop_bucket(b)
        b.close()


def test_no_bucket_creation_when_told_not_to(env: dict[str, str]) -> None:
    b = fresh_backend(env, create_bucket=False)
    try:
        with pytest.raises(BackendError, match="NoSuchBucket") as info:
            b.put("config", b"c")
        assert not info.value.retryable
    finally:
        b.close()


def test_invalid_keys_rejected(backend: S3Backend) -> None:
    for key in ("", "../x", "a//b", "a/./b", "sp ace"):
        with pytest.raises(InvalidArgument):
            backend.put(key, b"x")


def test_wrong_secret_is_a_clear_non_retryable_error(env: dict[str, str]) -> None:
    secret = "definitely-wrong-secret-XYZ"
    b = S3Backend("haven-test-badkey", "", with_secret(env, secret))
    try:
        for call in (lambda: b.put("x", b"1"), lambda: b.get("x"), lambda: list(b.list())):
            with pytest.raises(S3AuthError, match="SignatureDoesNotMatch") as info:
                call()
            assert not info.value.retryable
            assert secret not in str(info.value)
        with pytest.raises(S3AuthError):
            b.stat("x")  # HEAD: status only, still an auth error
    finally:
        b.close()


def test_wrong_region_names_the_expected_one(env: dict[str, str]) -> None:
    real = settings(env).region
    b = S3Backend(
        "haven-test-region",
        "",
        with_secret(env, settings(env).credentials.secret_key, region="eu-x-1"),
    )
    try:
        with pytest.raises(S3AuthError, match=f"expects region '{real}'"):
            b.get("x")
        with pytest.raises(BackendError, match="region"):
            b.stat("x")
    finally:
        b.close()


def test_skewed_clock_is_named(env: dict[str, str]) -> None:
    b = fresh_backend(env, clock=lambda: datetime.now(UTC) - timedelta(hours=2))
    try:
        with pytest.raises(S3AuthError, match="clock"):
            b.get("x")
    finally:
        b.close()


def test_unreachable_endpoint_is_transient(env: dict[str, str]) -> None:
    b = S3Backend(
        "haven-test-down",
        "",
        with_secret(env, "k", endpoint="http://127.0.0.1:9"),
        connect_timeout=2,
    )
    try:
        with pytest.raises(TransientBackendError):
            b.get("x")
    finally:
        b.close()


class _CorruptingTransport(httpx.BaseTransport):
    """A real connection to the lab that, while ``armed``, flips one byte of the next
    object PUT's body on the way (as a bad link or proxy would), then disarms."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.armed = False
        self.corrupted = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.armed and request.method == "PUT" and request.url.path.count("/") > 1:
            body = bytearray(request.read())
            body[len(body) // 2] ^= 0xFF
            self.armed = False
            self.corrupted += 1
            request = httpx.Request(
                request.method, request.url, headers=request.headers, content=bytes(body)
            )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_body_damaged_in_transit_is_refused_and_retried(env: dict[str, str]) -> None:
    transport = _CorruptingTransport()
    b = fresh_backend(env, transport=transport)
    data = os.urandom(100_000)
    try:
        b.put("seed", b"s")  # creates the bucket
        transport.armed = True
        with pytest.raises(TransientBackendError, match="damaged in transit"):
            b.put("packs/p1", data)
        assert transport.corrupted == 1
        assert not b.exists("packs/p1")  # refused by the server, not stored
        transport.armed = True
        RetryingBackend(b, base_delay=0.01).put("packs/p2", data)  # retried, then stored
        assert transport.corrupted == 2
        assert b.get("packs/p2") == data
    finally:
        drop_bucket(b)
        b.close()


def test_damaged_body_error_code(backend: S3Backend) -> None:
    # the server checks the signed SHA-256 of the body: a mismatch is refused, not stored
    backend.put("seed", b"s")
    resp = backend._request(
        "PUT",
        "put mismatched",
        key="mismatch",
        content=b"abc",
        payload_hash=hashlib.sha256(b"abd").hexdigest(),
    )
    assert resp.status_code == 400
    assert error_code(resp) in ("BadDigest", "XAmzContentSHA256Mismatch")
    assert not backend.exists("mismatch")


def test_no_secret_in_describe_repr_or_settings(env: dict[str, str], backend: S3Backend) -> None:
    secret = settings(env).credentials.secret_key
    backend.put("x", b"1")
    texts = (backend.describe(), repr(backend), repr(backend.settings), str(backend.settings))
    for text in texts:
        assert secret not in text
    assert backend.describe().startswith(f"s3://{backend.bucket}/repo/one (endpoint http://")


def test_factory_opens_s3_urls_from_the_environment(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    b = open_backend("s3://haven-test-factory/some/prefix")
    try:
        assert isinstance(b, Backend)
        b.put("k", b"v")
        assert b.get("k") == b"v"
        assert "s3://haven-test-factory/some/prefix" in b.describe()
        assert env["HAVEN_S3_SECRET_KEY"] not in b.describe()
    finally:
        inner = s3_mod.from_url("s3://haven-test-factory")
        drop_bucket(inner)
        inner.close()
        b.close()


def test_repository_credentials_win_over_the_environment(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HAVEN_S3_SECRET_KEY", "wrong-secret-in-env")
    with pytest.raises(S3AuthError):
        list(open_backend("s3://haven-test-creds", retries=False).list())
    b = open_backend(
        "s3://haven-test-creds/p",
        credentials={"secret_key": env["HAVEN_S3_SECRET_KEY"], "region": env["HAVEN_S3_REGION"]},
    )
    try:
        b.put("k", b"v")  # used: the right secret came from the credentials
        assert b.get("k") == b"v"
    finally:
        inner = s3_mod.from_url("s3://haven-test-creds", dict(env))
        drop_bucket(inner)
        inner.close()
        b.close()
