"""Shared test policy.

Integration tests need a lab (KVM, Swift, OpenStack, PostgreSQL). Where a lab is not
available they skip with a stated reason on a developer's machine, but in CI
(``CI=true``) a missing lab is a failure, never a silent skip.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def lab_unavailable(reason: str) -> None:
    """Skip (developer machine) or fail (CI) because a lab cannot be used."""
    if IN_CI:
        pytest.fail(f"lab unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)
