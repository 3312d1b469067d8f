"""Fixtures of the API tests that use the lab's Keystone (marked ``keystone``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.api import TenantHome, app_for, tenant_home
from tests.support.identity_lab import IdentityLab, identity_lab


@pytest.fixture(scope="module")
def ks() -> IdentityLab:
    return identity_lab()


@pytest.fixture(scope="module")
def tokens(ks: IdentityLab) -> dict[str, str]:
    users = ["alpha-reader", "alpha-member", "alpha-manager", "beta-member", "beta-reader"]
    return {u: ks.token(u) for u in [*users, "admin"]}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ks: IdentityLab) -> Iterator[TenantHome]:
    alpha, beta = ks.projects["dr-alpha"], ks.projects["dr-beta"]
    with tenant_home(tmp_path, monkeypatch, alpha, beta) as h:
        yield h


@pytest.fixture
def client(home: TenantHome, ks: IdentityLab) -> TestClient:
    return TestClient(app_for(ks.auth_url, ks.password))
