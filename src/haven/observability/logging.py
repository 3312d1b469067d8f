"""Structured logging that cannot leak secrets.

Contract:
- Every record passing a Haven handler is redacted first: values registered with
  :func:`register_secret` (passphrases, keys, tokens read at run time) and anything that
  looks like a credential (``password=...``, ``X-Auth-Token: ...``, ``user:pw@host`` in a
  URL) are replaced by ``***`` in the message, its arguments and the exception text.
- ``configure()`` installs the one Haven handler on the root logger, so that every logger
  that propagates (Haven's own and any library's) goes through it, formatted from
  ``HAVEN_LOG_FORMAT`` (``text`` or ``json``, default text) onto stderr; stdout stays free
  for command output and ``--json`` documents. The ``haven`` logger's level comes from
  ``HAVEN_LOG_LEVEL`` (default INFO); libraries keep the root level (WARNING).
- ``route(name)`` takes over a library logger that installs its own handlers (DBOS does,
  on every ``DBOS(config)``): its handlers go, it propagates to Haven's handler.
- A line logged while an API request is handled carries its request id (``request_id``
  in JSON, ``request_id=...`` in text): the API sets the :data:`request_id` context
  variable for the request, and the handler's :class:`ContextFilter` copies it into every
  record logged in that context (the request's own task and the threads it runs sync
  code in: asyncio tasks and Starlette's thread pool copy the context).
- A deliberate failure (a HavenError) is already reported to the user and recorded in its
  operation: its log line carries ``Type: message``, never a traceback. Any other
  exception keeps its traceback (redacted): that is a bug to report.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from haven.domain.errors import HavenError

REDACTED = "***"
# the id of the API request being handled in this context ("" outside a request); the
# API returns it in X-OpenStack-Request-Id and in its error documents
request_id: ContextVar[str] = ContextVar("haven_request_id", default="")
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


class ContextFilter(logging.Filter):
    """Adds the request id of the context the record is logged in (if any)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        if rid and not hasattr(record, "haven_request_id"):
            record.haven_request_id = rid
        return True


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, so formatters never see raw arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if isinstance(exc, HavenError):
                record.exc_text = redact(f"{type(exc).__name__}: {exc}")
            else:
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


class HavenHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Haven's handler: redacting filter, Haven's format. Without an explicit stream it
    writes to whatever ``sys.stderr`` is at the moment of each record (a CLI runner or a
    test may swap it; a stream bound once could be closed by then)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    def flush(self) -> None:
        self.stream = self._fixed or sys.stderr
        super().flush()

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self._fixed or sys.stderr
        super().emit(record)


def _haven_handler() -> HavenHandler | None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, HavenHandler):
            return handler
    return None


def configure(
    level: str | None = None, fmt: str | None = None, stream: IO[str] | None = None
) -> logging.Logger:
    """Install Haven's redacting handler on the root logger (idempotent: it replaces the
    one installed before) and set the ``haven`` logger's level."""
    root = logging.getLogger()
    logger = logging.getLogger("haven")
    level_name = (level or os.environ.get("HAVEN_LOG_LEVEL") or "INFO").upper()
    if level_name not in logging.getLevelNamesMapping():
        level_name = "INFO"
    fmt_name = (fmt or os.environ.get("HAVEN_LOG_FORMAT") or "text").lower()
    for owner in (root, logger):
        for handler in list(owner.handlers):
            if isinstance(handler, HavenHandler):
                owner.removeHandler(handler)
    handler = HavenHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt_name == "json" else TextFormatter())
    root.addHandler(handler)
    logger.setLevel(level_name)
    logger.propagate = True
    return logger


def route(name: str) -> logging.Logger:
    """Send logger ``name`` (a library's) through Haven's handler only: its own handlers
    are removed and it propagates to the root, where ``configure`` put Haven's handler
    (configured now from the environment if nobody did yet)."""
    if _haven_handler() is None:
        configure()
    log = logging.getLogger(name)
    for handler in list(log.handlers):
        log.removeHandler(handler)
    log.propagate = True
    return log
