"""Idempotency keys expire (no Keystone needed): a key answers with its operation for its
TTL after the first submit, then it is free again whatever the request; expired keys are
pruned when keys are written, a bounded batch per write. Times are set in the past
through the catalog, never waited for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from haven.api import settings
from haven.catalog.models import IdempotencyKeyRow
from haven.catalog.submissions import PRUNE_BATCH, IdempotencyMismatch
from haven.domain.errors import ValidationError
from haven.domain.operations import OperationKind, OperationState
from haven.engine import api as engine
from haven.engine import services
from haven.engine.scope import Scope
from haven.engine.submit import Submission
from tests.support.api import TenantHome, tenant_home
from tests.unit.api.test_tenancy import wait_done

ALPHA = "p-alpha"
A = Scope.of(ALPHA)
TTL = timedelta(seconds=1)
PROTECT = Submission(OperationKind.PROTECT, "shop")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TenantHome]:
    with tenant_home(tmp_path, monkeypatch, ALPHA, "p-beta") as h:
        yield h


def age_keys(project: str, by: timedelta) -> None:
    """Move ``project``'s keys ``by`` into the past (as if that time had gone by)."""
    with services.catalog().transaction() as s:
        s.execute(
            update(IdempotencyKeyRow)
            .where(IdempotencyKeyRow.project == project)
            .values(created_at=datetime.now(UTC) - by)
        )


def key_rows(project: str | None = None) -> int:
    with services.catalog().transaction() as s:
        q = select(func.count()).select_from(IdempotencyKeyRow)
        if project is not None:
            q = q.where(IdempotencyKeyRow.project == project)
        return int(s.scalar(q) or 0)


def test_an_expired_key_is_free_again(home: TenantHome) -> None:
    first, replayed = engine.submit(PROTECT, A, "k", TTL)
    assert not replayed and wait_done(first.id).state is OperationState.SUCCEEDED
    again, replayed = engine.submit(PROTECT, A, "k", TTL)  # within its TTL: a replay
    assert replayed and again.id == first.id
    drill = Submission(OperationKind.TEST_FAILOVER, plan="shop")
    with pytest.raises(IdempotencyMismatch):
        engine.submit(drill, A, "k", TTL)
    age_keys(ALPHA, TTL + timedelta(milliseconds=1))
    second, replayed = engine.submit(PROTECT, A, "k", TTL)  # the same request: a new one
    assert not replayed and second.id != first.id
    assert wait_done(second.id).state is OperationState.SUCCEEDED
    assert engine.submit(PROTECT, A, "k", TTL)[0].id == second.id  # the key is second's now
    age_keys(ALPHA, TTL * 2)
    third, replayed = engine.submit(drill, A, "k", TTL)  # another request: free as well
    assert not replayed and third.kind is OperationKind.TEST_FAILOVER
    assert wait_done(third.id).state is OperationState.SUCCEEDED
    assert key_rows(ALPHA) == 1
    # the default TTL (24 h) still answers a key set an hour ago
    age_keys(ALPHA, timedelta(hours=1))
    assert engine.submit(drill, A, "k")[0].id == third.id


def test_expired_keys_are_pruned_a_bounded_batch_per_write(home: TenantHome) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    fresh = datetime.now(UTC)
    with services.catalog().transaction() as s:
        for i in range(PRUNE_BATCH + 50):
            s.add(IdempotencyKeyRow(project="p-gone", key=f"old-{i}", request_hash="h",
                                    operation_id=f"op-old-{i}", created_at=old))  # fmt: skip
        for i in range(3):
            s.add(IdempotencyKeyRow(project="p-other", key=f"new-{i}", request_hash="h",
                                    operation_id=f"op-new-{i}", created_at=fresh))  # fmt: skip
    first = engine.submit(PROTECT, A, "w-1", timedelta(days=1))[0]
    assert key_rows("p-gone") == 50  # one batch went with the key written
    assert key_rows("p-other") == 3  # keys within the TTL stay
    wait_done(first.id)
    engine.submit(PROTECT, A, "w-1", timedelta(days=1))  # a replay writes no key: no prune
    assert key_rows("p-gone") == 50
    second = engine.submit(PROTECT, A, "w-2", timedelta(days=1))[0]
    assert key_rows("p-gone") == 0 and key_rows("p-other") == 3 and key_rows(ALPHA) == 2
    wait_done(second.id)
    without_key = engine.submit(PROTECT, A)[0]  # a submit without a key prunes nothing
    wait_done(without_key.id)
    assert key_rows() == 5


def test_the_ttl_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("HAVEN_API_AUTH_URL", "http://127.0.0.1:1/v3")
    monkeypatch.setenv("HAVEN_API_PASSWORD_FILE", str(secret))
    monkeypatch.delenv("HAVEN_API_IDEMPOTENCY_TTL", raising=False)
    assert settings.from_environment().idempotency_ttl == 24 * 3600
    monkeypatch.setenv("HAVEN_API_IDEMPOTENCY_TTL", "1")
    assert settings.from_environment().idempotency_ttl == 1
    assert settings.from_environment(idempotency_ttl=7).idempotency_ttl == 7  # --option
    for bad in ("0", "-5", "1h", ""):
        monkeypatch.setenv("HAVEN_API_IDEMPOTENCY_TTL", bad)
        with pytest.raises(ValidationError) as err:
            settings.from_environment()
        assert err.value.path == "HAVEN_API_IDEMPOTENCY_TTL"
