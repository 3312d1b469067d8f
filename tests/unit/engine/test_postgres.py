"""The engine with catalog and DBOS system database on PostgreSQL (several workers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from haven.catalog.store import Catalog
from haven.domain.operations import OperationKind, OperationState
from haven.engine import connect, runtime, service, services
from haven.engine.apply import apply_spec
from haven.engine.workflows.protect import protect_workflow
from haven.specs import load_spec
from tests.conftest import fresh_pg_database
from tests.unit.engine.lab import make_lab

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database("haven_engine") as url:
        yield url


def test_protect_with_postgres_engine_state(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HAVEN_CATALOG_URL", pg_url)
    monkeypatch.delenv("HAVEN_ENGINE_URL", raising=False)
    assert runtime.engine_url() == pg_url  # one database: catalog tables + dbos schema
    lab = make_lab(tmp_path / "lab")
    cat = Catalog.open()
    apply_spec(cat, load_spec(lab.spec))
    services.use_catalog(cat)
    try:
        op = service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop")
        assert op.state is OperationState.SUCCEEDED, op.error
        assert [s.name for s in op.steps][:2] == ["protect.start", "protect.snapshot"]
        with cat.engine.connect() as conn:
            n = conn.execute(
                text("SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid = :id"),
                {"id": op.id},
            ).scalar()
        assert n == 1  # the workflow's durable state lives in PostgreSQL
        assert not (tmp_path / "home" / "engine.sqlite").exists()
    finally:
        runtime.shutdown()
        connect.forget_all()
        services.use_catalog(None)
        cat.close()
