"""Shared test policy.

Integration tests need a lab (KVM, Swift, OpenStack, PostgreSQL). Where a lab is not
available they skip with a stated reason on a developer's machine, but in CI
(``CI=true``) a missing lab is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def lab_unavailable(reason: str) -> None:
    """Skip (developer machine) or fail (CI) because a lab cannot be used."""
    if IN_CI:
        pytest.fail(f"lab unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the lab server; dropped afterwards.

    Yields its URL. Needs ``HAVEN_TEST_PG_URL`` (lab/postgres/up.sh writes it)."""
    base = os.environ.get("HAVEN_TEST_PG_URL")
    if not base:
        lab_unavailable(
            "HAVEN_TEST_PG_URL is not set (start lab/postgres/up.sh and source its env)"
        )
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
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
