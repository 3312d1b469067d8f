"""What the API refuses before it asks Keystone anything: oversized bodies (counted as
they stream, whatever Content-Length says), non-JSON bodies, deep nesting, a missing
token; and what it answers when Keystone is down. No lab needed: the app's Keystone is
a closed port."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from haven.api.middleware import json_depth
from haven.api.settings import MAX_BODY_BYTES
from tests.support.api import unreachable_app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(unreachable_app())


def error_of(resp: Any) -> dict[str, Any]:
    doc = resp.json()
    assert set(doc) == {"error"}, doc
    err: dict[str, Any] = doc["error"]
    assert {"type", "message", "retryable", "exit_code", "request_id"} <= set(err)
    assert err["request_id"] == resp.headers["x-openstack-request-id"]
    return err


def asgi_post(app: Any, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """POST ``chunks`` straight through the ASGI interface; (status, chunks consumed)."""
    sent: list[dict[str, Any]] = []
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/operations", "raw_path": b"/v1/operations",
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"]), len(chunks) - len(pending)


def test_a_body_past_1_mib_is_413_whatever_content_length_says() -> None:
    app = unreachable_app()
    chunk = b" " * (256 * 1024)
    lying = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    status, read = asgi_post(app, [chunk] * 16, lying)
    assert status == 413
    assert read == 5  # stopped at the first chunk past the limit, the rest never read
    status, _ = asgi_post(app, [b"{}"], lying)
    assert status == 401  # within the limit: on to authentication


def test_a_streamed_body_is_counted(client: TestClient) -> None:
    resp = client.post("/v1/operations", content=iter([b" " * MAX_BODY_BYTES, b"{}"]),
                       headers={"content-type": "application/json"})  # fmt: skip
    assert resp.status_code == 413
    assert error_of(resp)["type"] == "PayloadTooLarge"


def test_a_body_that_is_not_json_is_415(client: TestClient) -> None:
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        resp = client.post("/v1/operations", content=b"{}", headers={"content-type": ctype})
        assert resp.status_code == 415, ctype
        assert ctype in error_of(resp)["message"]
    resp = client.post("/v1/operations", content=b"{}")
    assert resp.status_code == 415


def test_json_nested_deeper_than_32_is_422_and_32_is_not(client: TestClient) -> None:
    headers = {"content-type": "application/json; charset=utf-8"}
    deep = client.post("/v1/apply", content=b"[" * 33 + b"]" * 33, headers=headers)
    assert deep.status_code == 422
    assert error_of(deep)["problems"] == [
        {"path": "(body)", "message": "JSON nested deeper than 32 levels"}
    ]
    ok = client.post("/v1/apply", content=b"[" * 32 + b"]" * 32, headers=headers)
    assert ok.status_code == 401
    assert json_depth(json.dumps({"a": "[[[[{{{{", "b": [['\\"[']]}).encode()) == 3


def test_no_token_is_401_with_keystones_address(client: TestClient) -> None:
    resp = client.get("/v1/groups")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith('Keystone uri="http://127.0.0.1:')
    assert error_of(resp)["type"] == "Unauthenticated"
    bad = client.get("/v1/groups", headers={"X-Auth-Token": "t\u00e9".encode("latin-1")})
    assert bad.status_code == 401


def test_keystone_unreachable_is_a_retryable_503(client: TestClient) -> None:
    resp = client.get("/v1/groups", headers={"X-Auth-Token": "gAAAAAsome-token"})
    assert resp.status_code == 503
    err = error_of(resp)
    assert err["retryable"] is True and "unreachable" in err["message"]
    assert "gAAAAAsome-token" not in resp.text


def test_discovery_and_the_openapi_document_need_no_token(client: TestClient) -> None:
    root = client.get("/")
    assert root.status_code == 200
    (v1,) = root.json()["versions"]
    assert v1["id"] == "v1" and v1["status"] == "CURRENT"
    assert {"rel": "self", "href": "/v1"} in v1["links"]
    doc = client.get("/v1/openapi.json").json()
    for path in (
        "/v1/groups",
        "/v1/plans/{name}",
        "/v1/operations/{op_id}",
        "/v1/apply",
        "/v1/status",
        "/v1/points",
        "/v1/sites",
        "/v1/repositories",
        "/v1/policies",
    ):
        assert path in doc["paths"], path  # fmt: skip
    missing = client.get("/v2/groups")
    assert missing.status_code == 404 and error_of(missing)["type"] == "NotFoundError"
