"""Backends under the contract suite (tests/contract/test_backends.py).

``BACKENDS`` maps a parameter id to a factory ``(request, tmp_path) -> Iterator[Backend]``
(a generator: set up, yield the backend, clean up). To add a backend without editing
this file, drop a module ``tests/contract/backend_<name>.py`` next to it that defines
``register(backends: dict[str, BackendFactory]) -> None``; it is loaded at collection.
A factory whose lab is missing calls ``tests.conftest.lab_unavailable(reason)`` (skip on
a developer machine, fail in CI). Mark lab-backed factories' tests with the
``BACKEND_MARKS`` entry (e.g. ``pytest.mark.swift``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from haven.datamover.backends import (
    Backend,
    ConcurrencyLimitedBackend,
    LocalBackend,
    MemoryBackend,
    RetryingBackend,
    ThrottledBackend,
    TokenBucket,
)

BackendFactory = Callable[[pytest.FixtureRequest, Path], Iterator[Backend]]


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield MemoryBackend()


def _local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    backend = LocalBackend(tmp_path / "store")
    yield backend
    backend.close()


def _wrapped(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    inner = LocalBackend(tmp_path / "store", fsync=False)
    yield ConcurrencyLimitedBackend(ThrottledBackend(RetryingBackend(inner), TokenBucket(1e9)), 4)


BACKENDS: dict[str, BackendFactory] = {
    "memory": _memory,
    "local": _local,
    "local-wrapped": _wrapped,
}
BACKEND_MARKS: dict[str, list[pytest.MarkDecorator]] = {}


def _load_plugins() -> None:
    for path in sorted(Path(__file__).parent.glob("backend_*.py")):
        spec = importlib.util.spec_from_file_location(f"_haven_contract_{path.stem}", path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.register(BACKENDS)
        marks = getattr(module, "MARKS", None)
        if marks:
            BACKEND_MARKS.update(marks)


_load_plugins()


def backend_params() -> list[object]:
    return [pytest.param(name, marks=BACKEND_MARKS.get(name, []), id=name) for name in BACKENDS]


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    factory = contextmanager(BACKENDS[request.param])
    with factory(request, tmp_path) as be:
        yield be
