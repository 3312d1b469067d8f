"""Rows to domain objects, for rows this version may not understand.

A catalog can hold values this code does not know: a state or kind added by a newer
Haven, or a row changed by hand. Decoding such a row raises :class:`CatalogFormatError`
(exit 6) naming the row and the value, never a bare ValueError from deep inside an Enum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from haven.catalog.errors import CatalogFormatError

T = TypeVar("T")
_MAX_DETAIL = 160


def decoded(what: str, build: Callable[..., T], *args: Any) -> T:
    """``build(*args)``; a value it cannot convert becomes a CatalogFormatError about
    ``what`` (e.g. "group 'shop'")."""
    try:
        return build(*args)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        if len(detail) > _MAX_DETAIL:
            detail = detail[: _MAX_DETAIL - 3] + "..."
        raise CatalogFormatError(
            f"the catalog's {what} holds a value this version of Haven does not know "
            f"({detail}): it was written by a newer version of Haven or changed by hand; "
            "upgrade Haven, or repair or remove that row"
        ) from None
