"""The KVM lab for the tests of this directory (started by lab/kvm/up.sh, never here)."""

from __future__ import annotations

import pytest
from tests.conftest import lab_unavailable

from haven_lab import kvm


@pytest.fixture(scope="module")
def lab() -> kvm.Lab:
    try:
        return kvm.open_lab()
    except kvm.LabMissing as exc:
        lab_unavailable(str(exc))
        raise
