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
from haven.engine.demo import kvmlab
from tests.conftest import lab_unavailable


@pytest.fixture
def lab_env() -> kvmlab.LabEnv:
    env = kvmlab.read_env()
    if env is None or not all(kvmlab.alive(u) for u in (env.site_a_uri, env.site_b_uri)):
        lab_unavailable("KVM lab not running: bash lab/kvm/up.sh (as root)")
    assert env is not None
    return env


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
