"""Engine unit tests: an isolated HAVEN_HOME (catalog + DBOS SQLite) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.catalog.store import Catalog
from haven.engine import connect, runtime, services
from haven.engine.apply import apply_spec
from haven.specs import load_spec
from tests.unit.engine.lab import Lab, make_lab


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HAVEN_CATALOG_URL", raising=False)
    monkeypatch.delenv("HAVEN_ENGINE_URL", raising=False)
    built = make_lab(tmp_path / "lab")
    cat = Catalog.open()
    apply_spec(cat, load_spec(built.spec))
    services.use_catalog(cat)
    try:
        yield built
    finally:
        runtime.shutdown()
        connect.forget_all()
        services.use_catalog(None)
        cat.close()
