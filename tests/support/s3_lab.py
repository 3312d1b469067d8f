"""The S3 endpoint of the Swift lab (lab/swift/up.sh runs Swift's s3api middleware), for
the S3 contract and integration tests.

Settings come from the environment (``HAVEN_S3_ENDPOINT``...), else from the lab's env
file (tests.support.lab_env). Without either, or when the endpoint does not answer, the
test skips on a developer machine and FAILS in CI (tests/conftest.py: lab_unavailable).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

from haven.datamover.backends.base import BackendError
from haven.datamover.backends.s3 import S3Backend, S3Settings
from haven.datamover.backends.swift import read_env_file
from tests.conftest import lab_unavailable
from tests.support.lab_env import swift_lab_env_file


def s3_env() -> dict[str, str]:
    """The HAVEN_S3_* settings of the lab (checked to answer), or skip/fail."""
    if os.environ.get("HAVEN_S3_ENDPOINT"):
        env = {k: v for k, v in os.environ.items() if k.startswith("HAVEN_S3_")}
    else:
        path = swift_lab_env_file()
        if not path.exists():
            lab_unavailable(f"no Swift lab (S3 API): {path} missing (run lab/swift/up.sh)")
        env = {k: v for k, v in read_env_file(path).items() if k.startswith("HAVEN_S3_")}
        if "HAVEN_S3_ENDPOINT" not in env:
            lab_unavailable(f"{path} has no HAVEN_S3_* settings (re-run lab/swift/up.sh)")
    probe = fresh_backend(env)
    try:
        list(probe.list())  # a signed request: endpoint, keys and region all work
    except BackendError as exc:
        lab_unavailable(f"S3 API of the Swift lab not answering: {exc}")
    finally:
        probe.close()
    return env


def settings(env: dict[str, str]) -> S3Settings:
    return S3Settings.resolve(env=env)


def fresh_backend(env: dict[str, str], prefix: str = "", **kw: object) -> S3Backend:
    """A backend on a new, uniquely named bucket (created by its first put)."""
    return S3Backend(f"haven-test-{uuid.uuid4().hex[:12]}", prefix, settings(env), **kw)  # type: ignore[arg-type]


def drop_bucket(backend: S3Backend) -> None:
    """Delete every object of the backend's bucket (any prefix), then the bucket."""
    whole = S3Backend(backend.bucket, "", backend.settings)
    try:
        for info in list(whole.list()):
            whole.delete(info.key)
        resp = whole._request("DELETE", f"delete bucket {whole.bucket}")
        assert resp.status_code in (204, 404), resp.status_code
    finally:
        whole.close()


def backend_fixture(env: dict[str, str], prefix: str = "") -> Iterator[S3Backend]:
    b = fresh_backend(env, prefix)
    try:
        yield b
    finally:
        try:
            drop_bucket(b)
        finally:
            b.close()
