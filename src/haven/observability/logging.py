"""Structured logging that cannot leak secrets.

Contract:
- Every record passing a Haven handler is redacted first: values registered with
  :func:`register_secret` (passphrases, keys, tokens read at run time) and anything that
  looks like a credential (``password=...``, ``X-Auth-Token: ...``, ``user:pw@host`` in a
  URL) are replaced by ``***`` in the message, its arguments and the exception text.
- ``configure()`` sets the ``haven`` logger from ``HAVEN_LOG_LEVEL`` (default INFO) and
  ``HAVEN_LOG_FORMAT`` (``text`` or ``json``, default text) onto stderr; stdout stays free
  for command output and ``--json`` documents.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

REDACTED = "***"
_MIN_SECRET_LEN = 4
_secrets: set[str] = set()
_lock = threading.Lock()

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # key=value / key: value for credential-like keys
    (
        re.compile(
            r"(?i)\b((?:[a-z_-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|"
            r"auth[_-]?key|private[_-]?key))[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&}]+)"
        ),
        r"\1" + REDACTED,
    ),
    # credentials inside URLs: scheme://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)([^@/\s]+)(@)"), r"\1" + REDACTED + r"\3"),
    # HTTP authorization headers
    (re.compile(r"(?i)\b(authorization:\s*(?:bearer|basic)\s+)(\S+)"), r"\1" + REDACTED),
)


def register_secret(value: str | bytes | None) -> None:
    """Never let ``value`` appear in a log line from now on (this process)."""
    if value is None:
        return
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    if len(text) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(text)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, so formatters never see raw arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key.startswith("haven_") and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={"haven_<field>": ...}`` becomes ``<field>``."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key.startswith("haven_"):
                doc[key[len("haven_") :]] = value
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{k[len('haven_') :]}={v}" for k, v in vars(record).items() if k.startswith("haven_")
        ]
        return f"{line} {' '.join(fields)}" if fields else line


def configure(
    level: str | None = None, fmt: str | None = None, stream: IO[str] | None = None
) -> logging.Logger:
    """Install Haven's redacting handler on the ``haven`` logger (idempotent)."""
    logger = logging.getLogger("haven")
    level_name = (level or os.environ.get("HAVEN_LOG_LEVEL") or "INFO").upper()
    if level_name not in logging.getLevelNamesMapping():
        level_name = "INFO"
    fmt_name = (fmt or os.environ.get("HAVEN_LOG_FORMAT") or "text").lower()
    for handler in list(logger.handlers):
        if getattr(handler, "_haven", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._haven = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt_name == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level_name)
    logger.propagate = False
    return logger
