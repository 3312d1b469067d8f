"""The Swift backend's auth and error mapping against a mocked HTTP server (no lab needed):
Keystone v3 catalog lookup, tempauth, token renewal on 401, 5xx/timeouts -> transient,
secrets kept out of messages, env/file configuration."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from haven.datamover.backends.base import BackendError, ObjectNotFound, TransientBackendError
from haven.datamover.backends.swift import (
    KeystoneV3,
    SwiftAuthError,
    SwiftBackend,
    TempAuth,
    auth_from_env,
    from_url,
)
from haven.datamover.errors import InvalidArgument

PASSWORD = "s3cret-pa55word"
STORAGE = "http://swift.example:8080/v1/AUTH_p1"


def catalog(region: str = "RegionOne") -> list[dict[str, object]]:
    return [
        {"type": "identity", "endpoints": [{"interface": "public", "url": "http://ks/v3"}]},
        {
            "type": "object-store",
            "endpoints": [
                {"interface": "internal", "region": region, "url": "http://internal/v1/AUTH_p1"},
                {"interface": "public", "region": "Other", "url": "http://other/v1/AUTH_p1"},
                {"interface": "public", "region": region, "url": STORAGE},
            ],
        },
    ]


def keystone_app(
    tokens: list[str], objects: dict[str, bytes], fail: Callable[[httpx.Request], int | None]
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/auth/tokens":
            body = json.loads(request.content)
            pw = body["auth"]["identity"]["password"]["user"]["password"]
            if pw != PASSWORD:
                return httpx.Response(401)
            tokens.append(f"tok{len(tokens)}")
            return httpx.Response(
                201,
                headers={"X-Subject-Token": tokens[-1]},
                json={"token": {"catalog": catalog()}},
            )
        status = fail(request)
        if status:
            return httpx.Response(status)
        if request.headers.get("X-Auth-Token") != tokens[-1]:
            return httpx.Response(401)
        name = request.url.path.removeprefix("/v1/AUTH_p1/")
        if request.method == "PUT":
            if "/" not in name:
                return httpx.Response(201)
            objects[name] = request.content
            return httpx.Response(201)
        if request.method == "GET":
            if name in objects:
                return httpx.Response(200, content=objects[name])
            return httpx.Response(404)
        return httpx.Response(405)

    return handler


def make(
    fail: Callable[[httpx.Request], int | None] = lambda r: None,
) -> tuple[SwiftBackend, list[str], dict[str, bytes]]:
    tokens: list[str] = []
    objects: dict[str, bytes] = {}
    auth = KeystoneV3("http://ks:5000/v3", "alice", PASSWORD, "p1", region="RegionOne")
    b = SwiftBackend(
        "c", "pre", auth, transport=httpx.MockTransport(keystone_app(tokens, objects, fail))
    )
    return b, tokens, objects


def test_keystone_v3_finds_the_public_endpoint_of_the_region() -> None:
    b, tokens, objects = make()
    b.put("k", b"v")
    assert objects == {"c/pre/k": b"v"}
    assert b._storage_url == STORAGE
    assert b.get("k") == b"v"
    assert tokens == ["tok0"]


def test_expired_token_renewed_once() -> None:
    b, tokens, _ = make()
    b.put("k", b"v")
    tokens.append("rotated")  # the server now only accepts a new token
    assert b.get("k") == b"v"
    assert b._token == tokens[-1] and len(tokens) == 3


def test_wrong_password_is_not_retryable_and_secret_free() -> None:
    auth = KeystoneV3("http://user:pw@ks:5000/v3", "alice", "wrong-" + PASSWORD, "p1")
    b = SwiftBackend(
        "c", "", auth, transport=httpx.MockTransport(keystone_app([], {}, lambda r: None))
    )
    with pytest.raises(SwiftAuthError) as info:
        b.get("k")
    assert not info.value.retryable
    text = str(info.value) + b.describe() + repr(b) + repr(auth)
    assert PASSWORD not in text and "pw@" not in text


@pytest.mark.parametrize("status", [500, 503, 507, 408, 429])
def test_server_errors_are_transient(status: int) -> None:
    b, _, _ = make(lambda r: status if r.method == "GET" else None)
    b.put("k", b"v")
    with pytest.raises(TransientBackendError):
        b.get("k")


def test_timeouts_and_resets_are_transient() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    b = SwiftBackend(
        "c", "", TempAuth("http://s/auth/v1.0", "a:u", "k"), transport=httpx.MockTransport(boom)
    )
    with pytest.raises(TransientBackendError):
        b.get("k")


def test_404_and_other_4xx() -> None:
    b, _, _ = make(lambda r: 403 if r.url.path.endswith("/forbidden") else None)
    with pytest.raises(ObjectNotFound):
        b.get("missing")
    with pytest.raises(BackendError) as info:
        b.get("forbidden")
    assert not info.value.retryable


def test_auth_from_env_and_file(tmp_path: Path) -> None:
    f = tmp_path / "swift.env"
    f.write_text(
        "# comment\nexport HAVEN_SWIFT_AUTH_URL=http://127.0.0.1:18080/auth/v1.0\n"
        "HAVEN_SWIFT_USER=test:tester\nHAVEN_SWIFT_KEY='abc'\n"
    )
    auth = auth_from_env({"HAVEN_SWIFT_ENV_FILE": str(f)})
    assert auth == TempAuth("http://127.0.0.1:18080/auth/v1.0", "test:tester", "abc")
    ks = auth_from_env(
        {
            "OS_AUTH_URL": "http://ks:5000/v3",
            "OS_USERNAME": "u",
            "OS_PASSWORD": "p",
            "OS_PROJECT_NAME": "proj",
            "OS_REGION_NAME": "R",
        }
    )
    assert isinstance(ks, KeystoneV3) and ks.project_name == "proj" and ks.region == "R"
    with pytest.raises(InvalidArgument):
        auth_from_env({})
    with pytest.raises(InvalidArgument):
        auth_from_env({"HAVEN_SWIFT_AUTH_URL": "http://ks/v3", "HAVEN_SWIFT_USER": "u",
                       "HAVEN_SWIFT_KEY": "p"})  # fmt: skip


def test_url_forms() -> None:
    env = {"HAVEN_SWIFT_AUTH_URL": "http://s/auth/v1.0", "HAVEN_SWIFT_USER": "a:u",
           "HAVEN_SWIFT_KEY": "k"}  # fmt: skip
    b = from_url("swift://backups/site-a/repo1", env)
    assert (b.container, b.prefix) == ("backups", "site-a/repo1/")
    assert b.describe() == "swift://backups/site-a/repo1 (auth http://s/auth/v1.0)"
    for bad in ("swift://user:pw@c/p", "swift://c/p?key=1", "swift:///p", "s3://c"):
        with pytest.raises(InvalidArgument):
            from_url(bad, env)
