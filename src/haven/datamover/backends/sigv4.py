"""AWS Signature Version 4 for requests signed in the ``Authorization`` header.

Pure functions, no I/O, so that they can be checked against AWS's published examples
(tests/unit/datamover/test_dm_sigv4.py). The S3 backend (``s3.py``) is the only user.

The caller gives the exact path and query it will send; this module encodes neither
twice. S3 differs from other services in one point that matters here: the canonical
URI is the path URI-encoded *once* (``uri_encode(path, keep_slash=True)``).

Reference: "Signature Version 4 signing process" and "Authenticating Requests: Using the
Authorization Header (AWS Signature Version 4)" in the AWS documentation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair (and the session token of temporary credentials).

    ``repr`` shows the access key id only: the secret and the token never reach a log."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """AWS's UriEncode: every byte outside ``A-Za-z0-9-_.~`` as ``%XX`` (upper-case hex),
    ``/`` kept only when ``keep_slash`` (object key names in a path)."""
    out: list[str] = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in _UNRESERVED or (keep_slash and ch == "/"):
            out.append(ch)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Names and values URI-encoded, sorted by encoded name then value, ``&``-joined; a
    parameter without value keeps its ``=`` (``lifecycle=``). The same string is what
    the S3 backend sends, so the signed and the sent query cannot differ."""
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in pairs)


def _canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(canonical header block, signed header names)."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.strip().lower()
        val = _SPACES.sub(" ", value.strip())
        lowered[key] = f"{lowered[key]},{val}" if key in lowered else val
    names = sorted(lowered)
    block = "".join(f"{n}:{lowered[n]}\n" for n in names)
    return block, ";".join(names)


def amz_date(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


@dataclass(frozen=True, slots=True)
class Signed:
    """What signing produced; ``headers`` are to be sent along with the signed ones."""

    # the canonical request and the headers hold the session token, if any: not in repr
    canonical_request: str = field(repr=False)
    string_to_sign: str
    signature: str
    headers: dict[str, str] = field(repr=False)


def sign(
    *,
    method: str,
    canonical_uri: str,
    query: str,
    headers: Mapping[str, str],
    payload_hash: str,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
) -> Signed:
    """Sign one request.

    ``canonical_uri`` is the path exactly as sent (already encoded), ``query`` the query
    string exactly as sent (from :func:`canonical_query`), ``headers`` every header to
    sign, ``host`` included, as sent. ``X-Amz-Date`` (and ``X-Amz-Security-Token`` for
    temporary credentials) are added here, signed and returned in ``headers`` together
    with ``Authorization``.
    """
    stamp = amz_date(now)
    extra = {"X-Amz-Date": stamp}
    if credentials.session_token:
        extra["X-Amz-Security-Token"] = credentials.session_token
    block, signed_names = _canonical_headers({**headers, **extra})
    canonical_request = "\n".join(
        [method.upper(), canonical_uri, query, block, signed_names, payload_hash]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()]
    )
    key = signing_key(credentials.secret_key, stamp[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    extra["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_names}, Signature={signature}"
    )
    return Signed(canonical_request, string_to_sign, signature, extra)
