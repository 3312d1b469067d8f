"""Tokens against the lab's real Keystone: revoked (at once without a cache, after the
TTL with one), Keystone unreachable, a disabled project."""

from __future__ import annotations

import os
import time
import urllib.request
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support.api import TenantHome, app_for, as_, closed_port
from tests.support.identity_lab import IdentityLab

pytestmark = pytest.mark.keystone


def _revoke(ks: IdentityLab, admin: str, token: str) -> None:
    req = urllib.request.Request(
        f"{ks.auth_url}/auth/tokens",
        method="DELETE",
        headers={"X-Auth-Token": admin, "X-Subject-Token": token},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 204


def test_a_revoked_token_is_401_at_once_without_a_cache_and_after_the_ttl_with_one(
    home: TenantHome, ks: IdentityLab, tokens: dict[str, str]
) -> None:
    uncached = TestClient(app_for(ks.auth_url, ks.password, ttl=0))
    cached = TestClient(app_for(ks.auth_url, ks.password, ttl=300))
    token = ks.token("alpha-reader")
    for c in (uncached, cached):
        assert c.get("/v1/groups", headers=as_(token)).status_code == 200
    _revoke(ks, tokens["admin"], token)
    gone = uncached.get("/v1/groups", headers=as_(token))
    assert gone.status_code == 401
    assert gone.headers["www-authenticate"] == f'Keystone uri="{ks.auth_url}"'
    assert token not in gone.text
    # the cache's price, by design: trusted until its entry expires (min(TTL, expiry))
    assert cached.get("/v1/groups", headers=as_(token)).status_code == 200
    assert uncached.get("/v1/groups", headers=as_("not-a-token")).status_code == 401


def test_keystone_unreachable_is_503(home: TenantHome, tokens: dict[str, str]) -> None:
    down = TestClient(app_for(f"http://127.0.0.1:{closed_port()}/v3", "x", ttl=0))
    resp = down.get("/v1/groups", headers=as_(tokens["alpha-reader"]))
    assert resp.status_code == 503 and resp.json()["error"]["retryable"] is True


def _keystone(ks: IdentityLab, admin: str, method: str, path: str, body: Any = None) -> Any:
    r = httpx.request(
        method, f"{ks.auth_url}{path}", json=body, timeout=30, headers={"X-Auth-Token": admin}
    )
    r.raise_for_status()
    return r.json() if r.content else None


def test_a_token_of_a_disabled_project_is_401(
    home: TenantHome, ks: IdentityLab, tokens: dict[str, str]
) -> None:
    """A project and user of this test's own (created, then deleted): the shared lab's
    projects stay as they are."""
    admin = tokens["admin"]
    name = f"haven-api-test-{os.getpid()}-{time.monotonic_ns()}"
    project = _keystone(
        ks, admin, "POST", "/projects", {"project": {"name": name, "domain_id": "default"}}
    )["project"]
    user = _keystone(
        ks,
        admin,
        "POST",
        "/users",
        {"user": {"name": name, "password": ks.password, "domain_id": "default"}},
    )["user"]
    try:
        roles = _keystone(ks, admin, "GET", "/roles?name=member")["roles"]
        _keystone(
            ks, admin, "PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{roles[0]['id']}"
        )
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"id": user["id"], "password": ks.password}},
                },
                "scope": {"project": {"id": project["id"]}},
            }
        }
        token = httpx.post(f"{ks.auth_url}/auth/tokens", json=body, timeout=30).headers[
            "X-Subject-Token"
        ]
        api = TestClient(app_for(ks.auth_url, ks.password, ttl=0))
        mine = api.get("/v1/groups", headers=as_(token))
        assert mine.status_code == 200 and mine.json()["items"] == []  # a project of no groups
        _keystone(ks, admin, "PATCH", f"/projects/{project['id']}", {"project": {"enabled": False}})
        assert api.get("/v1/groups", headers=as_(token)).status_code == 401
    finally:
        _keystone(ks, admin, "DELETE", f"/users/{user['id']}")
        _keystone(ks, admin, "PATCH", f"/projects/{project['id']}", {"project": {"enabled": False}})
        _keystone(ks, admin, "DELETE", f"/projects/{project['id']}")
