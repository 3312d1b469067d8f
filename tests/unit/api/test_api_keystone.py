"""The REST API against the lab's real Keystone (``lab/openstack/up.sh --identity``):
the role matrix over every route, projects that cannot see each other, revoked tokens,
the token cache, parallel submits, hostile input past authentication, and one real
``haven api`` process over TCP.

Not covered here: "a member server must belong to the caller's project" needs Nova (the
identity lab has none); the fake site driver stands in for the clouds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from haven.catalog.models import IdempotencyKeyRow
from haven.engine import services
from tests.support.api import TERMINAL, TenantHome, app_for, as_, closed_port, wait_done
from tests.support.identity_lab import IdentityLab

pytestmark = pytest.mark.keystone
ROLE_USER = {
    "reader": "alpha-reader",
    "member": "alpha-member",
    "manager": "alpha-manager",
    "admin": "admin",
}
RANK = {"reader": 0, "member": 1, "manager": 2, "admin": 3}
KEY_REF = "0b7c6a1e-5d2f-4c3b-9a8e-1f2d3c4b5a69"  # a well-formed Barbican secret uuid
DAY = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")


def matrix(role: str, tmp: Path, alpha: str) -> list[tuple[str, str, Any, str, set[int]]]:
    """(method, path, body, least role, statuses when allowed) for every route."""
    g = {
        "name": f"g-{role}",
        "source": "site-a",
        "target": "site-b",
        "policy": "gold",
        "repository": "offsite",
        "members": [{"server": f"srv-{role}"}],
    }
    plan = {"name": f"pl-{role}", "group": "shop", "stages": [{"servers": ["db", "app", "web"]}]}
    op = lambda kind, **k: {"kind": kind, **k}  # noqa: E731
    return [
        ("GET", "/v1/sites", None, "reader", {200}),
        ("GET", "/v1/sites/site-a", None, "reader", {200}),
        (
            "POST",
            "/v1/sites",
            {"name": f"s-{role}", "driver": "fake", "uri": f"file://{tmp}/s"},
            "admin",
            {201},
        ),
        ("PUT", "/v1/sites/no-site", {"driver": "fake"}, "admin", {404}),
        ("GET", "/v1/repositories", None, "reader", {200}),
        ("GET", "/v1/repositories/offsite", None, "reader", {200}),
        ("POST", "/v1/repositories", {"name": "r", "url": "/nowhere"}, "admin", {422}),
        ("PUT", "/v1/repositories/no-repo", {"url": "/x"}, "admin", {404}),
        ("GET", "/v1/policies", None, "reader", {200}),
        ("GET", "/v1/policies/gold", None, "reader", {200}),
        ("POST", "/v1/policies", {"name": f"p-{role}", "rpo": "1h"}, "admin", {201}),
        ("PUT", f"/v1/policies/p-{role}", {"rpo": "2h"}, "admin", {200}),
        ("GET", "/v1/groups", None, "reader", {200}),
        ("GET", "/v1/groups/shop", None, "reader", {200}),
        ("POST", "/v1/groups", g, "member", {201}),
        ("PUT", f"/v1/groups/g-{role}", {**g, "description": "d"}, "member", {200}),
        ("DELETE", f"/v1/groups/g-{role}", None, "member", {204}),
        ("GET", "/v1/plans", None, "reader", {200}),
        ("GET", "/v1/plans/shop", None, "reader", {200}),
        ("POST", "/v1/plans", plan, "member", {201}),
        ("PUT", f"/v1/plans/pl-{role}", plan, "member", {200}),
        ("DELETE", f"/v1/plans/pl-{role}", None, "member", {204}),
        ("POST", "/v1/groups/shop/suspend", None, "member", {200}),
        ("POST", "/v1/groups/shop/resume", None, "member", {200}),
        ("POST", "/v1/groups/no-group/suspend", None, "member", {404}),
        ("GET", "/v1/points?group=shop", None, "reader", {200}),
        ("GET", "/v1/points/rp-none", None, "reader", {404}),
        ("DELETE", "/v1/points/rp-none", None, "manager", {404}),
        ("GET", "/v1/operations", None, "reader", {200}),
        ("GET", "/v1/operations/op-none", None, "reader", {404}),
        ("POST", "/v1/operations", op("protect", group="none"), "member", {404}),
        ("POST", "/v1/operations", op("test-failover", plan="none"), "member", {404}),
        ("POST", "/v1/operations", op("cleanup", plan="shop"), "member", {404}),
        ("POST", "/v1/operations", op("failover", plan="none"), "manager", {404}),
        ("POST", "/v1/operations", op("failback", plan="none"), "manager", {404}),
        ("GET", "/v1/status", None, "reader", {200}),
        ("GET", f"/v1/usage?start={DAY[0]}&end={DAY[1]}&stored=false", None, "reader", {200}),
        ("GET", f"/v1/quotas/{alpha}", None, "reader", {200}),
        ("GET", "/v1/quotas", None, "admin", {200}),
        ("PUT", f"/v1/quotas/{alpha}", {"points": None}, "admin", {200}),
        # the lab's repository keeps its keys in Haven (key_store local): refused by name
        ("PUT", "/v1/keys/offsite", {"secret_ref": KEY_REF}, "manager", {422}),
        ("POST", "/v1/apply?dry_run=true", {"groups": [g]}, "member", {200}),
        (
            "POST",
            "/v1/apply?dry_run=true",
            {"policies": [{"name": "x", "rpo": "1h"}]},
            "admin",
            {200},
        ),
    ]


@pytest.mark.parametrize("role", list(RANK))
def test_role_matrix(
    role: str, client: TestClient, tokens: dict[str, str], tmp_path: Path, ks: IdentityLab
) -> None:
    token = tokens[ROLE_USER[role]]
    seen = []
    rows = matrix(role, tmp_path, ks.projects["dr-alpha"])
    for method, path, body, least, allowed in rows:
        resp = client.request(method, path, json=body, headers=as_(token))
        expected = allowed if RANK[role] >= RANK[least] else {403}
        seen.append((method, path, resp.status_code))
        assert resp.status_code in expected, (method, path, body, resp.text)
        if resp.status_code == 403:
            assert resp.json()["error"]["type"] == "ForbiddenError"
    assert len(seen) == len(rows)


def test_usage_and_quotas_per_project(
    client: TestClient, tokens: dict[str, str], ks: IdentityLab
) -> None:
    """A project sees its own usage and quota only; the admin sets a points quota that
    the API then enforces on protect (403 before any operation), and sees every project."""
    alpha, beta, admin = tokens["alpha-member"], tokens["beta-member"], tokens["admin"]
    a_id, b_id = ks.projects["dr-alpha"], ks.projects["dr-beta"]
    sub = client.post(
        "/v1/operations", json={"kind": "protect", "group": "shop"}, headers=as_(alpha)
    )
    assert sub.status_code == 202, sub.text
    assert wait_done(client, alpha, sub.json()["id"])["state"] == "succeeded"
    now = datetime.now(UTC)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    window = f"start={now - timedelta(days=1):{iso}}&end={now + timedelta(hours=1):{iso}}"
    got = client.get(f"/v1/usage?{window}", headers=as_(alpha))
    assert got.status_code == 200, got.text
    mine = got.json()["projects"]
    assert [u["project"] for u in mine] == [a_id] and mine[0]["points_taken"] == 1
    assert mine[0]["stored_bytes"] > 0
    assert client.get(f"/v1/usage?{window}&project={b_id}", headers=as_(alpha)).status_code == 404
    every = client.get(f"/v1/usage?{window}&stored=false", headers=as_(admin)).json()["projects"]
    assert {a_id, b_id} <= {u["project"] for u in every}
    assert client.get(f"/v1/quotas/{b_id}", headers=as_(alpha)).status_code == 404
    assert (
        client.put(f"/v1/quotas/{a_id}", json={"points": 1}, headers=as_(alpha)).status_code == 403
    )
    set_ = client.put(f"/v1/quotas/{a_id}", json={"points": 1}, headers=as_(admin))
    assert set_.status_code == 200 and set_.json()["points"] == {"limit": 1, "in_use": 1}
    assert set_.json()["groups"]["limit"] is None  # absent from the body: unchanged
    refused = client.post("/v1/operations", json={"kind": "protect", "group": "shop"},
                          headers=as_(alpha))  # fmt: skip
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "QuotaExceeded"
    assert "points" in refused.json()["error"]["message"]
    ops = client.get("/v1/operations?group=shop", headers=as_(alpha)).json()["operations"]
    assert len(ops) == 1  # the refusal recorded no operation
    bad = client.put(f"/v1/quotas/{a_id}", json={"points": -1}, headers=as_(admin))
    assert bad.status_code == 422
    assert (
        client.get(f"/v1/usage?start={DAY[1]}&end={DAY[0]}", headers=as_(alpha)).status_code == 422
    )
    beta_sees = client.get(f"/v1/quotas/{b_id}", headers=as_(beta))
    assert beta_sees.status_code == 200 and beta_sees.json()["points"]["limit"] is None


def test_projects_do_not_see_each_other(
    client: TestClient, tokens: dict[str, str], ks: IdentityLab
) -> None:
    alpha, beta, admin = tokens["alpha-member"], tokens["beta-member"], tokens["admin"]

    def names(token: str, kind: str) -> list[str]:
        return [i["name"] for i in client.get(f"/v1/{kind}", headers=as_(token)).json()["items"]]

    assert names(alpha, "groups") == ["shop"] and names(beta, "groups") == ["beta-app"]
    assert names(beta, "plans") == ["beta-app"]
    assert names(admin, "groups") == ["beta-app", "shop"]
    page = client.get("/v1/groups?limit=1", headers=as_(admin)).json()
    assert [i["name"] for i in page["items"]] == ["beta-app"] and page["next_marker"] == "beta-app"
    page = client.get("/v1/groups?limit=1&marker=beta-app", headers=as_(admin)).json()
    assert [i["name"] for i in page["items"]] == ["shop"] and page["next_marker"] is None
    sub = client.post(
        "/v1/operations", json={"kind": "protect", "group": "shop"}, headers=as_(alpha)
    )
    assert sub.status_code == 202
    op_id = sub.json()["id"]
    assert wait_done(client, alpha, op_id)["state"] == "succeeded"
    point = client.get("/v1/points?group=shop", headers=as_(alpha)).json()["points"][0]["id"]
    for method, path, body in [
        ("GET", "/v1/groups/shop", None),
        ("GET", "/v1/plans/shop", None),
        ("GET", "/v1/points?group=shop", None),
        ("GET", f"/v1/points/{point}", None),
        ("GET", f"/v1/operations/{op_id}", None),
        ("GET", "/v1/operations?group=shop", None),
        ("PUT", "/v1/groups/shop", {"description": "x"}),
        ("DELETE", "/v1/plans/shop", None),
        ("POST", "/v1/groups/shop/suspend", None),
        ("POST", "/v1/groups/shop/resume", None),
        ("POST", "/v1/operations", {"kind": "protect", "group": "shop"}),
        ("POST", "/v1/operations", {"kind": "test-failover", "plan": "shop"}),
    ]:
        resp = client.request(method, path, json=body, headers=as_(beta))
        assert resp.status_code == 404, (method, path, resp.text)
        assert "dr-alpha" not in resp.text and ks.projects["dr-alpha"] not in resp.text
    assert client.get("/v1/operations", headers=as_(beta)).json()["operations"] == []
    assert [g["group"] for g in client.get("/v1/status", headers=as_(beta)).json()["groups"]] == [
        "beta-app"
    ]
    taken = client.post(
        "/v1/groups",
        json={
            "name": "shop",
            "source": "site-a",
            "target": "site-b",
            "policy": "gold",
            "members": [{"server": "x"}],
        },
        headers=as_(beta),
    )
    assert taken.status_code == 409 and ks.projects["dr-alpha"] not in taken.text
    seen = client.get(f"/v1/operations/{op_id}", headers=as_(admin)).json()
    assert seen["steps"] and seen["id"] == op_id  # the admin sees every project


def test_suspend_and_resume_a_group(client: TestClient, tokens: dict[str, str]) -> None:
    """Group state changes, not operations: immediate, idempotent, member and up, 409
    while an operation holds the group (nothing changed), no operation recorded."""
    member, reader = as_(tokens["alpha-member"]), as_(tokens["alpha-reader"])
    state = lambda: next(  # noqa: E731
        g["state"] for g in client.get("/v1/status", headers=reader).json()["groups"]
    )
    assert client.post("/v1/groups/shop/suspend", headers=reader).status_code == 403
    first = client.post("/v1/groups/shop/suspend", headers=member)
    assert first.status_code == 200, first.text
    assert first.json() == {"group": "shop", "state": "suspended"} and state() == "suspended"
    again = client.post("/v1/groups/shop/suspend", headers=member)
    assert again.status_code == 200 and again.json()["state"] == "suspended"
    back = client.post("/v1/groups/shop/resume", headers=member)
    assert back.status_code == 200 and back.json()["state"] == "unprotected"  # no point yet
    assert client.post("/v1/groups/shop/resume", headers=member).json()["state"] == "unprotected"
    assert client.get("/v1/operations?group=shop", headers=reader).json()["operations"] == []
    services.catalog().acquire_group_lock("shop", "op-held")  # an operation holds it
    try:
        busy = client.post("/v1/groups/shop/suspend", headers=member)
        assert busy.status_code == 409 and "op-held" in busy.text, busy.text
    finally:
        services.catalog().release_group_lock("shop", "op-held")
    assert state() == "unprotected"  # the refused suspend changed nothing
    sub = client.post("/v1/operations", json={"kind": "protect", "group": "shop"}, headers=member)
    assert wait_done(client, member["X-Auth-Token"], sub.json()["id"])["state"] == "succeeded"
    resumed = client.post("/v1/groups/shop/resume", headers=member)
    assert resumed.json()["state"] == "protected"  # it has a point now


def test_points_page_newest_first(client: TestClient, tokens: dict[str, str]) -> None:
    member, beta = as_(tokens["alpha-member"]), as_(tokens["beta-member"])
    taken = []
    for _ in range(3):
        sub = client.post("/v1/operations", json={"kind": "protect", "group": "shop"},
                          headers=member)  # fmt: skip
        assert sub.status_code == 202, sub.text
        done = wait_done(client, member["X-Auth-Token"], sub.json()["id"])
        assert done["state"] == "succeeded"
        taken.append(done["result"]["point"])
    every = client.get("/v1/points?group=shop", headers=member).json()
    assert [p["id"] for p in every["points"]] == taken[::-1] and every["next_marker"] is None
    first = client.get("/v1/points?group=shop&limit=2", headers=member).json()
    assert [p["id"] for p in first["points"]] == [taken[2], taken[1]]
    assert first["next_marker"] == taken[1]
    second = client.get(f"/v1/points?group=shop&limit=2&marker={taken[1]}", headers=member)
    assert second.status_code == 200, second.text
    assert [p["id"] for p in second.json()["points"]] == [taken[0]]
    assert second.json()["next_marker"] is None
    for bad in ("0", "1001", "-1"):
        resp = client.get(f"/v1/points?group=shop&limit={bad}", headers=member)
        assert resp.status_code == 422 and resp.json()["error"]["problems"][0]["path"] == "limit"
    assert client.get("/v1/points?group=shop&marker=rp-nope", headers=member).status_code == 404
    assert client.get("/v1/points?group=shop&marker=../x", headers=member).status_code == 422
    # alpha's point as a marker for beta's own group: 404, nothing about alpha shown
    other = client.get(f"/v1/points?group=beta-app&marker={taken[0]}", headers=beta)
    assert other.status_code == 404 and "shop" not in other.text


def test_hostile_input_past_authentication(client: TestClient, tokens: dict[str, str]) -> None:
    t = as_(tokens["alpha-member"])
    unknown = client.post(
        "/v1/operations", json={"kind": "protect", "group": "shop", "bogus": 1}, headers=t
    )
    assert unknown.status_code == 422
    assert {"path": "bogus", "message": "unknown field; remove it"} in unknown.json()["error"][
        "problems"
    ]
    for limit in ("-1", "0", str(10**9), "x"):
        resp = client.get(f"/v1/operations?limit={limit}", headers=t)
        assert resp.status_code == 422 and resp.json()["error"]["problems"][0]["path"] == "limit"
    for path in (
        "/v1/groups/..%2F..%2Fetc",
        "/v1/groups/%2e%2e",
        "/v1/groups/UPPER",
        "/v1/points?group=..%2Fx",
        "/v1/operations/..%2Fop",
    ):
        resp = client.get(path, headers=t)
        assert resp.status_code in (404, 422), (path, resp.text)
        assert "error" in resp.json()
    bad_name = client.post(
        "/v1/groups",
        json={
            "name": "../x",
            "source": "site-a",
            "target": "site-b",
            "policy": "gold",
            "members": [{"server": "x"}],
        },
        headers=t,
    )
    assert bad_name.status_code == 422 and "name" in bad_name.text
    no_policy = client.post(
        "/v1/groups",
        json={
            "name": "g",
            "source": "site-a",
            "target": "site-b",
            "policy": "platinum",
            "members": [{"server": "x"}],
        },
        headers=t,
    )
    assert no_policy.status_code == 422 and "platinum" in no_policy.text
    key = client.post(
        "/v1/operations",
        json={"kind": "protect", "group": "shop"},
        headers={**t, "Idempotency-Key": "x" * 256},
    )
    assert (
        key.status_code == 422 and key.json()["error"]["problems"][0]["path"] == "Idempotency-Key"
    )


def test_200_parallel_submits_run_one_operation_and_keys_replay(
    client: TestClient, tokens: dict[str, str]
) -> None:
    token = tokens["alpha-member"]
    assert client.get("/v1/groups", headers=as_(token)).status_code == 200  # token cached

    async def burst(key: str | None) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            headers = as_(token, **({"Idempotency-Key": key} if key else {}))
            body = {"kind": "protect", "group": "shop"}
            return await asyncio.gather(
                *(c.post("/v1/operations", json=body, headers=headers) for _ in range(200))
            )

    first = asyncio.run(burst(None))
    codes = sorted(r.status_code for r in first)
    assert codes == [202] + [409] * 199, codes[:5]
    (winner,) = [r for r in first if r.status_code == 202]
    assert winner.headers["location"] == f"/v1/operations/{winner.json()['id']}"
    wait_done(client, token, winner.json()["id"])
    replays = asyncio.run(burst("burst-key-1"))
    locations = {r.headers.get("location") for r in replays}
    assert {r.status_code for r in replays} == {202} and len(locations) == 1
    op_id = replays[0].json()["id"]
    assert wait_done(client, token, op_id)["state"] == "succeeded"
    ops = client.get("/v1/operations?group=shop", headers=as_(token)).json()["operations"]
    assert [o["id"] for o in ops] == [op_id, winner.json()["id"]]
    changed = client.post(
        "/v1/operations",
        json={"kind": "protect", "group": "shop", "planned": True},
        headers=as_(token, **{"Idempotency-Key": "burst-key-1"}),
    )
    assert changed.status_code == 422 and "Idempotency-Key" in changed.text


def test_an_idempotency_key_expires_after_the_setting(
    home: TenantHome, ks: IdentityLab, tokens: dict[str, str]
) -> None:
    client = TestClient(app_for(ks.auth_url, ks.password, idempotency_ttl=1))
    headers = as_(tokens["alpha-member"], **{"Idempotency-Key": "ttl-key"})
    body = {"kind": "protect", "group": "shop"}
    first = client.post("/v1/operations", json=body, headers=headers)
    assert first.status_code == 202, first.text
    wait_done(client, tokens["alpha-member"], first.json()["id"])
    assert (
        client.post("/v1/operations", json=body, headers=headers).json()["id"] == first.json()["id"]
    )
    with services.catalog().transaction() as s:  # two seconds have gone by, for the key
        s.execute(
            update(IdempotencyKeyRow).values(created_at=datetime.now(UTC) - timedelta(seconds=2))
        )
    second = client.post("/v1/operations", json=body, headers=headers)
    assert second.status_code == 202 and second.json()["id"] != first.json()["id"]
    assert second.headers["location"] == f"/v1/operations/{second.json()['id']}"
    assert wait_done(client, tokens["alpha-member"], second.json()["id"])["state"] == "succeeded"


def test_the_haven_api_process_over_tcp(
    home: TenantHome, ks: IdentityLab, tokens: dict[str, str], tmp_path: Path
) -> None:
    secret = tmp_path / "service-password"
    secret.write_text(ks.password + "\n")
    port = closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env.update(
        HAVEN_HOME=str(home.home),
        HAVEN_API_AUTH_URL=ks.auth_url,
        HAVEN_API_PASSWORD_FILE=str(secret),
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "haven", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness: the port answers, or the process has died
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "haven api did not answer in 60 s"
                time.sleep(0.2)
        reader = as_(tokens["alpha-reader"])
        groups = httpx.get(f"{base}/v1/groups", headers=reader, timeout=30).json()
        assert [g["name"] for g in groups["items"]] == ["shop"]
        sub = httpx.post(
            f"{base}/v1/operations",
            json={"kind": "protect", "group": "shop"},
            headers=as_(tokens["alpha-member"]),
            timeout=30,
        )
        assert sub.status_code == 202, sub.text
        deadline = time.monotonic() + 60
        while (op := httpx.get(base + sub.headers["location"], headers=reader, timeout=30).json())[
            "state"
        ] not in TERMINAL:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert op["state"] == "succeeded", json.dumps(op)[:2000]
        assert httpx.get(f"{base}/v1/groups", timeout=30).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
