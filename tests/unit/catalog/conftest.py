"""Catalog tests run against SQLite and, where HAVEN_TEST_PG_URL is set, PostgreSQL.

In CI the PostgreSQL lab is required (.ci/run starts it): its absence fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tests.conftest import lab_unavailable


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    base = os.environ.get("HAVEN_TEST_PG_URL")
    if not base:
        lab_unavailable(
            "HAVEN_TEST_PG_URL is not set (start lab/postgres/up.sh and source its env)"
        )
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"haven_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # server down
        lab_unavailable(f"PostgreSQL at {make_url(base).render_as_string()} unusable: {exc}")
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
