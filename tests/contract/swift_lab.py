"""Finding the Swift lab for tests (shared by the swift contract and integration tests).

Credentials come from the environment (``HAVEN_SWIFT_AUTH_URL``...), else from the env file
``lab/swift/up.sh`` writes (``HAVEN_SWIFT_ENV_FILE``, default ``$HAVEN_LAB_STATE/swift/env``
or ``lab/.state/swift/swift.env``).
Without either, or when Swift does not answer, the test skips on a developer machine and
FAILS in CI (tests/conftest.py: lab_unavailable).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

from tests.conftest import lab_unavailable
from tests.support.lab_env import swift_lab_env_file

from haven.datamover.backends.base import BackendError
from haven.datamover.backends.swift import SwiftBackend, auth_from_env, read_env_file


def swift_env() -> dict[str, str]:
    """The HAVEN_SWIFT_* settings, or skip/fail through lab_unavailable()."""
    if os.environ.get("HAVEN_SWIFT_AUTH_URL"):
        env = {k: v for k, v in os.environ.items() if k.startswith(("HAVEN_SWIFT_", "OS_"))}
    else:
        path = swift_lab_env_file()
        if not path.exists():
            lab_unavailable(f"no Swift lab: {path} missing (run lab/swift/up.sh)")
        env = read_env_file(path)
    probe = SwiftBackend(f"haven-probe-{uuid.uuid4().hex[:8]}", "", auth_from_env(env))
    try:
        probe.auth.authenticate(probe._client)
    except BackendError as exc:
        lab_unavailable(f"Swift lab not answering at {probe.auth.describe()}: {exc}")
    finally:
        probe.close()
    return env


def fresh_backend(env: dict[str, str], prefix: str = "") -> SwiftBackend:
    """A backend on a new, uniquely named container."""
    return SwiftBackend(f"haven-test-{uuid.uuid4().hex[:12]}", prefix, auth_from_env(env))


def drop_container(backend: SwiftBackend) -> None:
    """Delete every object of the backend's container, then the container."""
    saved = backend.prefix
    backend.prefix = ""
    try:
        for info in list(backend.list()):
            backend.delete(info.key)
        backend._request("DELETE", "delete container")
    finally:
        backend.prefix = saved


def backend_fixture(env: dict[str, str], prefix: str = "") -> Iterator[SwiftBackend]:
    b = fresh_backend(env, prefix)
    try:
        yield b
    finally:
        try:
            drop_container(b)
        finally:
            b.close()
