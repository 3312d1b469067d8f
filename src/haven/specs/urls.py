"""URLs in specs carry locations, never credentials.

A URL is stored in the catalog and shown by ``get``, ``describe`` and ``--json``; a
password in it (``swift://user:secret@host/...``) or in a query parameter
(``?password=...``, ``?token=...``) would be shown to everyone who can read those.
Credentials are referenced instead (``password``/``credentials`` as ``{env: VAR}`` or
``{file: PATH}``). Messages name what was found, never its value.
:func:`redacted` shows a URL stored before this check existed without its credentials.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def redacted(url: str) -> str:
    """``url`` with any password and secret-looking query value replaced by ``***``."""
    if credentials_in(url) is None:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = urlencode(
        [
            (name, "***" if _SECRET_PARAM.search(name) else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def refuse_credentials(url: str, hint: str) -> str:
    """``url`` if it carries no credentials, else ValueError (``hint``: where they go)."""
    found = credentials_in(url)
    if found is not None:
        raise ValueError(
            f"contains credentials ({found}); Haven stores and shows this URL, so it must "
            f"not hold a password or token: {hint}"
        )
    return url
