"""Process-wide services the workflow steps use: the catalog (opened lazily).

Steps receive only serialisable arguments (DBOS records them); everything stateful is
reached from here, so that a recovered step in a new process finds the same services.
"""

from __future__ import annotations

import threading

from haven.catalog.store import Catalog

_lock = threading.Lock()
_catalog: Catalog | None = None


def catalog() -> Catalog:
    global _catalog
    with _lock:
        if _catalog is None:
            _catalog = Catalog.open()
        return _catalog


def use_catalog(cat: Catalog | None) -> None:
    """Make steps in this process use ``cat`` (tests; None: reopen from the environment)."""
    global _catalog
    with _lock:
        _catalog = cat
