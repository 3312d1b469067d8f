"""URLs in specs carry locations, never credentials.

A URL is stored in the catalog and shown by ``get``, ``describe`` and ``--json``; a
password in it (``swift://user:secret@host/...``) or in a query parameter
(``?password=...``, ``?token=...``) would be shown to everyone who can read those.
Credentials are referenced instead (``password``/``credentials`` as ``{env: VAR}`` or
``{file: PATH}``). Messages name what was found, never its value.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

_SECRET_PARAM = re.compile(
    r"(?i)(pass(word|wd|phrase)?|secret|token|api[_-]?key|auth|credential|signature|sig)"
)


def credentials_in(url: str) -> str | None:
    """What credential ``url`` carries (for the message), or None when it carries none."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. an unbalanced IPv6 bracket: not a URL we would use anyway
        return None
    if password is not None:
        return "a password in user:password@"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_PARAM.search(name):
            return f"a {name[:40]!r} query parameter"
    return None


def refuse_credentials(url: str, hint: str) -> str:
    """``url`` if it carries no credentials, else ValueError (``hint``: where they go)."""
    found = credentials_in(url)
    if found is not None:
        raise ValueError(
            f"contains credentials ({found}); Haven stores and shows this URL, so it must "
            f"not hold a password or token: {hint}"
        )
    return url
