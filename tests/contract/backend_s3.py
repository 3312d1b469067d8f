"""Plugs the S3 backend into the shared contract suite (tests/contract/test_backends.py)
as the ``s3`` and ``s3-retrying`` parameters, marked ``swift``: every contract test also
runs on a fresh bucket of the Swift lab's S3 API (lab/swift/up.sh, s3api middleware).
Without the lab those tests skip on a developer machine and fail in CI
(tests.conftest.lab_unavailable)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.s3_lab import backend_fixture, s3_env

from haven.datamover.backends import Backend, RetryingBackend

MARKS = {"s3": [pytest.mark.swift], "s3-retrying": [pytest.mark.swift]}
_ENV: dict[str, str] = {}


def _env() -> dict[str, str]:
    if not _ENV:
        _ENV.update(s3_env())
    return _ENV


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from backend_fixture(_env(), prefix="contract")


def _s3_retrying(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    for backend in backend_fixture(_env()):
        yield RetryingBackend(backend)


def register(backends: dict[str, object]) -> None:
    backends["s3"] = _s3
    backends["s3-retrying"] = _s3_retrying
