"""Engine integration tests on the KVM lab (started by lab/kvm/up.sh, never by the tests).

Each test gets its own HAVEN_HOME; the engine (DBOS) runs in the test process and is
stopped afterwards. Guests the tests boot are named ``it-*`` (demo: ``demo-*``) and
removed at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.engine import connect, runtime, services
from haven_lab import kvm
from tests.conftest import lab_unavailable


@pytest.fixture
def lab_env() -> kvm.LabEnv:
    try:
        return kvm.require_lab()
    except kvm.LabMissing as exc:
        lab_unavailable(str(exc))
        raise


@pytest.fixture
def engine_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("HAVEN_HOME", str(home))
    monkeypatch.delenv("HAVEN_CATALOG_URL", raising=False)
    monkeypatch.delenv("HAVEN_ENGINE_URL", raising=False)
    try:
        yield home
    finally:
        runtime.shutdown()
        connect.forget_all()
        services.use_catalog(None)
