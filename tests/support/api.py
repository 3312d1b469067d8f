"""The Haven API in tests: a fake-site lab whose groups belong to two projects, and the
app built against a Keystone (the identity lab's, or an address where none answers).

``tenant_home(tmp, alpha, beta)``: a private HAVEN_HOME whose catalog holds the engine
lab (sites a/b, repository, policy gold), its group ``shop`` and plan ``shop`` in
project ``alpha`` (runnable: the fake site has its servers) and group ``beta-app`` with
plan ``beta-app`` in project ``beta`` (never run). The engine uses that catalog until
the context ends; then the engine stops and the catalog closes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from haven.api.app import create_app
from haven.api.settings import DEFAULT_IDEMPOTENCY_TTL, ApiSettings, KeystoneSettings
from haven.catalog.store import Catalog
from haven.engine import connect, runtime, services
from haven.engine.apply import apply_spec
from haven.specs import load_spec
from tests.support.tenants import project_keys
from tests.unit.engine.lab import Lab, edited_spec, make_lab

TERMINAL = {"succeeded", "failed", "cancelled"}
BETA_GROUP = {
    "name": "beta-app",
    "source": "site-a",
    "target": "site-b",
    "policy": "gold",
    "repository": "offsite",
    "members": [{"server": "beta-solo"}],
}
BETA_PLAN = {"name": "beta-app", "group": "beta-app", "stages": [{"servers": ["beta-solo"]}]}


@dataclass(frozen=True)
class TenantHome:
    lab: Lab
    home: Path
    alpha: str
    beta: str


@contextmanager
def tenant_home(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, alpha: str, beta: str
) -> Iterator[TenantHome]:
    monkeypatch.setenv("HAVEN_HOME", str(tmp / "home"))
    for var in ("HAVEN_CATALOG_URL", "HAVEN_ENGINE_URL"):
        monkeypatch.delenv(var, raising=False)
    lab = make_lab(tmp / "lab")

    def edit(data: dict[str, Any]) -> None:
        data["groups"][0]["project"] = alpha
        data["groups"].append({**BETA_GROUP, "project": beta})
        data["plans"].append(BETA_PLAN)

    cat = Catalog.open()
    try:
        apply_spec(cat, load_spec(edited_spec(lab, edit, "tenants")))
        services.use_catalog(cat)
        project_keys(alpha, beta)  # each project's data under its own key (docs/keys.md)
        yield TenantHome(lab, tmp / "home", alpha, beta)
    finally:
        runtime.shutdown()
        connect.forget_all()
        services.use_catalog(None)
        cat.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_for(
    auth_url: str,
    password: str,
    ttl: int = 300,
    policy_file: str | None = None,
    idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL,
) -> FastAPI:
    keystone = KeystoneSettings(auth_url=auth_url.rstrip("/"), password=password, timeout=5)
    settings = ApiSettings(
        keystone, token_cache_ttl=ttl, policy_file=policy_file, idempotency_ttl=idempotency_ttl
    )
    return create_app(settings)


def unreachable_app() -> FastAPI:
    """An app whose Keystone is a closed port: everything before authentication works."""
    return app_for(f"http://127.0.0.1:{closed_port()}/v3", "unused")


def as_(token: str, **extra: str) -> dict[str, str]:
    return {"X-Auth-Token": token, **extra}


def wait_done(client: TestClient, token: str, op_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op: dict[str, Any] = client.get(f"/v1/operations/{op_id}", headers=as_(token)).json()
        if op["state"] in TERMINAL:
            return op
        time.sleep(0.1)  # polling the operation's end, bounded by the deadline
    raise AssertionError(f"{op_id} not finished after {timeout}s")


def wait_port_free(port: int, timeout: float = 120) -> None:
    """Wait for ``port`` on loopback to be free (another developer's ``haven api`` on a
    fixed port ends); fail naming the port after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    msg = f"127.0.0.1:{port} still in use after {timeout}s"
                    raise AssertionError(msg) from None
        time.sleep(1)  # polling another process's exit, bounded by the deadline


@contextmanager
def api_process(home: Path, auth_url: str, password: str, port: int) -> Iterator[str]:
    """A real ``haven api`` (a subprocess) on 127.0.0.1:``port`` over ``home``'s catalog,
    answering before the context is entered; yields its base URL, terminates at exit."""
    secret = home / "api-service-password"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(password + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env.update(
        HAVEN_HOME=str(home),
        HAVEN_API_AUTH_URL=auth_url,
        HAVEN_API_PASSWORD_FILE=str(secret),
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    log = home / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "haven", "api", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness: the port answers, or the process has died
            assert proc.poll() is None, log.read_text()[-4000:]
            try:
                if httpx.get(f"{base}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "haven api did not answer in 60 s"
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
