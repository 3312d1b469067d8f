"""Catalog errors.

Exit codes follow ``haven.domain.errors``: a catalog that cannot be reached is an
external failure (5, retryable); a setting that names no usable catalog
(``HAVEN_HOME``, ``HAVEN_CATALOG_URL``) is bad input (2, a ``ValidationError`` naming the
setting); a catalog holding what this version cannot interpret -- a schema revision
written by a newer Haven, or a row value it does not know -- is :class:`CatalogFormatError`
(6, like the data mover's ``UnsupportedFormat``: the stored data cannot be used as it
is, and retrying will not change that; upgrading Haven or repairing the row will).
"""

from __future__ import annotations

from haven.domain.errors import ConflictError, ExternalError, IntegrityError


class CatalogError(ExternalError):
    """The catalog database cannot be reached or used."""

    retryable = True


class CatalogFormatError(IntegrityError):
    """The catalog holds a schema revision or a value this version does not know."""


class GroupBusy(ConflictError):
    def __init__(self, group: str, operation_id: str) -> None:
        super().__init__(
            f"group {group!r} is busy with operation {operation_id}; wait for it or resume it"
        )
        self.group = group
        self.operation_id = operation_id
