"""Catalog errors."""

from __future__ import annotations

from haven.domain.errors import ConflictError, ExternalError


class CatalogError(ExternalError):
    """The catalog database cannot be reached or used."""

    retryable = True


class GroupBusy(ConflictError):
    def __init__(self, group: str, operation_id: str) -> None:
        super().__init__(
            f"group {group!r} is busy with operation {operation_id}; wait for it or resume it"
        )
        self.group = group
        self.operation_id = operation_id
