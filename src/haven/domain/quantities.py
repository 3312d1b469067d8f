"""Durations, byte sizes and byte rates as operators write them ("15m", "50MiB/s").

Parsing is strict: a value that is not understood raises ValueError with a message
that says what would be valid. Values are kept as integers (seconds, bytes, bytes/s).
"""

from __future__ import annotations

import re

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_UNITS = {
    "": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
DURATION_HELP = "a non-negative number with unit s, m, h, d or w, e.g. '30s', '15m', '4h'"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
SIZE_HELP = "a number with unit B, KB, MB, GB, KiB, MiB or GiB, e.g. '64MiB'"
RATE_HELP = "a byte rate such as '50MiB/s' or '100MB/s'"


def parse_duration(value: object) -> int:
    """Seconds in ``value`` (int seconds or a string such as '15m')."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration ({DURATION_HELP})")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative; a duration must be >= 0 ({DURATION_HELP})")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration ({DURATION_HELP})")
    if value.strip().startswith("-"):
        raise ValueError(f"{value!r} is negative; a duration must be >= 0 ({DURATION_HELP})")
    match = _DURATION_RE.match(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError(f"{value!r} is not a duration ({DURATION_HELP})")
    return int(float(match.group(1)) * _DURATION_UNITS[unit])


def parse_size(value: object) -> int:
    """Bytes in ``value`` (int bytes or a string such as '64MiB')."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size ({SIZE_HELP})")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative ({SIZE_HELP})")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size ({SIZE_HELP})")
    match = _SIZE_RE.match(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size ({SIZE_HELP})")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_rate(value: object) -> int:
    """Bytes per second in ``value`` (int or a string such as '50MiB/s')."""
    if isinstance(value, str):
        text = value.strip()
        if not text.lower().endswith("/s"):
            raise ValueError(f"{value!r} is not a rate ({RATE_HELP})")
        try:
            rate = parse_size(text[:-2])
        except ValueError:
            raise ValueError(f"{value!r} is not a rate ({RATE_HELP})") from None
    else:
        try:
            rate = parse_size(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate ({RATE_HELP})") from None
    if rate <= 0:
        raise ValueError(f"{value!r} must be greater than zero ({RATE_HELP})")
    return rate


def format_duration(seconds: int) -> str:
    """The shortest exact form: 900 -> '15m', 90 -> '90s'."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.0f}{unit}" if unit == "B" else f"{nbytes:.1f}{unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")
