"""Catalog tests run against SQLite and, where HAVEN_TEST_PG_URL is set, PostgreSQL.

In CI the PostgreSQL lab is required (.ci/run starts it): its absence fails the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import fresh_pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    with fresh_pg_database("haven_test") as url:
        yield url
