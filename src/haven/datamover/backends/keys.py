"""Validation of object keys (see the contract in base.py)."""

from __future__ import annotations

import re

from haven.datamover.errors import InvalidArgument

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


def check_key(key: str) -> None:
    """Raise :class:`InvalidArgument` unless ``key`` is ``seg/seg/...`` of safe segments
    (no empty, ``.`` or ``..`` segment, so a key can never escape a directory)."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _SEGMENT.match(p) for p in parts):
        raise InvalidArgument("key", f"invalid object key {key!r}")
