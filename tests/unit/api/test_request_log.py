"""Request ids in log lines: every line Haven writes while handling an API request
carries that request's id (the one the response's X-OpenStack-Request-Id names), and no
token or password ever reaches a log line, even with Keystone's client at DEBUG."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support.api import as_, unreachable_app, wait_done
from tests.support.identity_lab import IdentityLab
from tests.support.logs import json_log

HEADER = "x-openstack-request-id"


def test_each_requests_lines_carry_its_own_id_without_keystone() -> None:
    app = unreachable_app()

    async def two() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            return await asyncio.gather(c.get("/"), c.get("/v1/groups?token=abc123secret"))

    with json_log() as log:
        answers = asyncio.run(two())
    lines = log.lines()
    access = [line for line in lines if line["logger"] == "haven.api.access"]
    assert len(access) == 2, lines
    for resp in answers:
        rid = resp.headers[HEADER]
        (mine,) = [line for line in access if line["request_id"] == rid]
        assert mine["status"] == resp.status_code and mine["msg"].startswith("GET /")
    assert {a.status_code for a in answers} == {200, 401}
    assert "abc123secret" not in log.text  # the query is not logged
    outside = [line for line in lines if "request_id" not in line]
    assert not [line for line in outside if line["logger"].startswith("haven.api")]


@pytest.mark.keystone
def test_one_submits_log_lines_carry_its_id_and_no_token(
    client: TestClient, tokens: dict[str, str], ks: IdentityLab
) -> None:
    token = tokens["alpha-member"]
    with json_log("keystoneauth") as log:  # Keystone's client logs requests at DEBUG
        sub = client.post(
            "/v1/operations",
            json={"kind": "protect", "group": "shop"},
            headers=as_(token, **{"Idempotency-Key": "log-key"}),
        )
        assert sub.status_code == 202, sub.text
        wait_done(client, token, sub.json()["id"])
    rid = sub.headers[HEADER]
    lines = log.lines()
    mine = [line for line in lines if line.get("request_id") == rid]
    loggers = {line["logger"] for line in mine}
    # the token's validation with Keystone, the engine's submit, the access line
    assert {"haven.engine.submit", "haven.api.access"} <= loggers, loggers
    assert any(name.startswith("keystoneauth") for name in loggers), loggers
    access = [line for line in mine if line["logger"] == "haven.api.access"]
    assert len(access) == 1 and access[0]["status"] == 202
    submitted = [line for line in mine if line["logger"] == "haven.engine.submit"]
    assert submitted[0]["operation"] == sub.json()["id"]
    # lines of other requests (the polling GETs) carry their own ids, never this one
    others = {line["request_id"] for line in lines if line["logger"] == "haven.api.access"}
    assert len(others) == len([ln for ln in lines if ln["logger"] == "haven.api.access"])
    # no secret in any line: the caller's token, the service user's password
    assert token not in log.text and ks.password not in log.text
    assert len(token) > 20 and token[:20] not in log.text
