"""Durations, byte sizes and byte rates as operators write them ("15m", "50MiB/s").

Parsing is strict: a value that is not understood raises ValueError with a message
that says what would be valid. Values are kept as integers (seconds, bytes, bytes/s).

Bounds (checked before any conversion that could overflow): a duration is at most
``MAX_DURATION_SECONDS`` (10 years), a size or rate at most ``MAX_BYTES`` (2^63 - 1,
what a 64-bit signed integer holds); inf and nan are never values.
"""

from __future__ import annotations

import math
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
MAX_DURATION_SECONDS = 3650 * 86400
MAX_BYTES = 2**63 - 1

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
        raise ValueError(f"{_short(value)} is not a duration ({DURATION_HELP})")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(
                f"{_short(value)} is negative; a duration must be >= 0 ({DURATION_HELP})"
            )
        return _bounded_duration(value, value)
    if not isinstance(value, str):
        raise ValueError(f"{_short(value)} is not a duration ({DURATION_HELP})")
    if value.strip().startswith("-"):
        raise ValueError(f"{_short(value)} is negative; a duration must be >= 0 ({DURATION_HELP})")
    match = _DURATION_RE.match(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError(f"{_short(value)} is not a duration ({DURATION_HELP})")
    return _bounded_duration(value, float(match.group(1)) * _DURATION_UNITS[unit])


def _finite(number: float) -> bool:
    return not isinstance(number, float) or math.isfinite(number)


def _bounded_duration(value: object, seconds: float) -> int:
    if not _finite(seconds) or seconds > MAX_DURATION_SECONDS:
        raise ValueError(
            f"{_short(value)} is not a duration of at most "
            f"{format_duration(MAX_DURATION_SECONDS)} ({DURATION_HELP})"
        )
    return int(seconds)


def _short(value: object) -> str:
    """``repr(value)`` cut to 40 characters (an enormous integer is not even rendered)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return "a number this large"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bounded_size(value: object, nbytes: float) -> int:
    if not _finite(nbytes) or nbytes > MAX_BYTES:
        raise ValueError(f"{_short(value)} is not a size of at most 2^63-1 bytes ({SIZE_HELP})")
    return int(nbytes)


def parse_size(value: object) -> int:
    """Bytes in ``value`` (int bytes or a string such as '64MiB')."""
    if isinstance(value, bool):
        raise ValueError(f"{_short(value)} is not a size ({SIZE_HELP})")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{_short(value)} is negative ({SIZE_HELP})")
        return _bounded_size(value, value)
    if not isinstance(value, str):
        raise ValueError(f"{_short(value)} is not a size ({SIZE_HELP})")
    match = _SIZE_RE.match(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{_short(value)} is not a size ({SIZE_HELP})")
    return _bounded_size(value, float(match.group(1)) * _SIZE_UNITS[unit])


def parse_rate(value: object) -> int:
    """Bytes per second in ``value`` (int or a string such as '50MiB/s')."""
    if isinstance(value, str):
        text = value.strip()
        if not text.lower().endswith("/s"):
            raise ValueError(f"{_short(value)} is not a rate ({RATE_HELP})")
        try:
            rate = parse_size(text[:-2])
        except ValueError:
            raise ValueError(f"{_short(value)} is not a rate ({RATE_HELP})") from None
    else:
        try:
            rate = parse_size(value)
        except ValueError:
            raise ValueError(f"{_short(value)} is not a rate ({RATE_HELP})") from None
    if rate <= 0:
        raise ValueError(f"{_short(value)} must be greater than zero ({RATE_HELP})")
    return rate


def format_duration(seconds: int) -> str:
    """The shortest exact form: 900 -> '15m', 90 -> '90s'."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
