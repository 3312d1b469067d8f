"""Lossless conversion between domain dataclasses and plain JSON-ready data.

``to_data`` and ``from_data`` are exact inverses for every dataclass in
``haven.domain`` (a round-trip test checks it). Enums become their values, datetimes
ISO strings, tuples lists. This is the storage form of the catalog and of ``--json``
output; the operator-facing YAML form lives in ``haven.specs``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


def to_data(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {str(k): to_data(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_data(v) for v in obj]
    return obj


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_data(cls: type[T], data: Any) -> T:
    """Build ``cls`` from ``to_data`` output. Raises ValueError on a shape mismatch."""
    result: T = _convert(cls, data)
    return result


def _convert(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, data)
            except (ValueError, TypeError, KeyError):
                continue
        raise ValueError(f"{data!r} matches none of {tp}")
    if origin is tuple:
        return tuple(_convert(typing.get_args(tp)[0], v) for v in data)
    if origin is list:
        return [_convert(typing.get_args(tp)[0], v) for v in data]
    if origin is dict:
        _, vt = typing.get_args(tp)
        return {str(k): _convert(vt, v) for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"{tp.__name__} needs a mapping, got {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {
            f.name: _convert(hints[f.name], data[f.name])
            for f in dataclasses.fields(tp)
            if f.name in data
        }
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    if tp is datetime:
        return datetime.fromisoformat(data)
    if tp is Any:
        return data
    if tp is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if isinstance(tp, type) and isinstance(data, tp):
        return data
    raise ValueError(f"{data!r} is not a {tp}")
