"""Output conventions shared by every command group.

- ``--json`` prints exactly one JSON document on stdout and nothing else there;
  human text goes to stdout, diagnostics to stderr.
- Errors are reported on stderr as ``error: <message>`` (or as ``{"error": ...}`` on
  stdout with ``--json``) and the process exits with the error's ``exit_code``.
- Nothing printed here may contain secrets: callers pass redacted data.
- Text that comes from data (names, paths, messages) is never read as Rich markup: it
  is :func:`escape`d or printed with ``markup=False`` (a path such as ``/x/[/y]`` would
  otherwise raise Rich's MarkupError, and ``[...]`` would vanish from messages).
- ``--json`` anywhere on the command line means JSON (:data:`json_requested`, set by
  ``haven.cli.main``): usage errors are JSON documents too, and a guarded command
  answers in JSON even when click bound the token to something else (``-f --json``).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from haven.domain.errors import ExitCode, HavenError, ValidationError, error_document

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

json_requested: ContextVar[bool] = ContextVar("haven_json_requested", default=False)


class UsageError(ValidationError):
    """The command line itself is wrong: unknown option, missing argument, bad value."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, enums, datetimes and paths into JSON-ready values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def fail(exc: HavenError, as_json: bool) -> typer.Exit:
    """Report ``exc`` and return the Exit to raise."""
    if as_json:
        payload = error_document(exc)
        print_json(payload)
    else:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            err_console.print(f"[red]error:[/red] {escape(line)}", highlight=False, markup=True)
    return typer.Exit(int(exc.exit_code))


def guarded(func: F) -> F:
    """Turn HavenErrors raised by a command into the documented exit codes.

    The command must accept a keyword argument ``as_json`` (the ``--json`` flag).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if json_requested.get():
            kwargs["as_json"] = True
        try:
            return func(*args, **kwargs)
        except HavenError as exc:
            raise fail(exc, bool(kwargs.get("as_json", False))) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")

__all__ = [
    "JSON_OPTION",
    "ExitCode",
    "UsageError",
    "console",
    "err_console",
    "escape",
    "fail",
    "guarded",
    "json_requested",
    "print_json",
]
