"""Plugs the Swift backend into the shared contract suite (tests/contract/test_backends.py)
as the ``swift`` parameter, marked ``swift``: every contract test also runs on a fresh
container of the real Swift all-in-one (lab/swift/up.sh). Without the lab those tests skip
on a developer machine and fail in CI (tests.conftest.lab_unavailable)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.contract.swift_lab import backend_fixture, swift_env

from haven.datamover.backends import Backend, RetryingBackend

MARKS = {"swift": [pytest.mark.swift], "swift-retrying": [pytest.mark.swift]}
_ENV: dict[str, str] = {}


def _env() -> dict[str, str]:
    if not _ENV:
        _ENV.update(swift_env())
    return _ENV


def _swift(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from backend_fixture(_env(), prefix="contract")


def _swift_retrying(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    for backend in backend_fixture(_env()):
        yield RetryingBackend(backend)


def register(backends: dict[str, object]) -> None:
    backends["swift"] = _swift
    backends["swift-retrying"] = _swift_retrying
