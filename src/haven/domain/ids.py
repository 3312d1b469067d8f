"""Names and identifiers.

Resource names (sites, repositories, policies, groups, plans) are chosen by the
operator and must be DNS-label-like so they are safe in object keys, file names and
URLs. Recovery points and operations get generated ids that sort by creation time.
"""

from __future__ import annotations

import os
import re
import time

# matched with fullmatch: "$" alone would also accept a name ending in a newline
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NAME_HELP = "lower-case letters, digits and '-', 1-63 characters, starting and ending alphanumeric"

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def check_name(value: str) -> str:
    """Return ``value`` if it is a valid resource name, else raise ValueError."""
    if not NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name ({NAME_HELP})")
    return value


def new_id(prefix: str) -> str:
    """A time-sortable unique id: ``<prefix>-<10 chars ms time><16 chars random>``."""
    millis = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    chars: list[str] = []
    for _ in range(10):
        chars.append(_CROCKFORD[millis & 31])
        millis >>= 5
    head = "".join(reversed(chars))
    tail_chars: list[str] = []
    for _ in range(16):
        tail_chars.append(_CROCKFORD[rand & 31])
        rand >>= 5
    return f"{prefix}-{head}{''.join(tail_chars)}"
