"""Engine unit tests: an isolated HAVEN_HOME (catalog + DBOS SQLite) per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from haven.catalog.store import Catalog
from haven.engine import connect, runtime, services
from haven.engine.apply import apply_spec
from haven.specs import load_spec
from tests.unit.engine.lab import Lab, make_lab

LabFactory = Callable[..., Lab]


@pytest.fixture
def lab_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabFactory]:
    """``lab_with(**make_lab options)``: the lab, applied to a fresh catalog the engine
    uses; the engine is stopped and the catalog closed after the test."""
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HAVEN_CATALOG_URL", raising=False)
    monkeypatch.delenv("HAVEN_ENGINE_URL", raising=False)
    opened: list[Catalog] = []

    def build(**options: Any) -> Lab:
        built = make_lab(tmp_path / "lab", **options)
        cat = Catalog.open()
        opened.append(cat)
        apply_spec(cat, load_spec(built.spec))
        services.use_catalog(cat)
        return built

    try:
        yield build
    finally:
        runtime.shutdown()
        connect.forget_all()
        services.use_catalog(None)
        for cat in opened:
            cat.close()


@pytest.fixture
def lab(lab_with: LabFactory) -> Lab:
    return lab_with()
