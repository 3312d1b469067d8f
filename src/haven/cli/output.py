"""Output conventions shared by every command group.

- ``--json`` prints exactly one JSON document on stdout and nothing else there;
  human text goes to stdout, diagnostics to stderr.
- Errors are reported on stderr as ``error: <message>`` (or as ``{"error": ...}`` on
  stdout with ``--json``) and the process exits with the error's ``exit_code``.
- Nothing printed here may contain secrets: callers pass redacted data.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from haven.domain.errors import ExitCode, HavenError, ValidationErrors

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


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
        payload: dict[str, Any] = {
            "error": {
                "type": type(exc).__name__,
                "message": str(exc),
                "retryable": exc.retryable,
                "exit_code": int(exc.exit_code),
            }
        }
        if isinstance(exc, ValidationErrors):
            payload["error"]["problems"] = [
                {"path": e.path, "message": e.message} for e in exc.errors
            ]
        print_json(payload)
    else:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            err_console.print(f"[red]error:[/red] {line}", highlight=False, markup=True)
    return typer.Exit(int(exc.exit_code))


def guarded(func: F) -> F:
    """Turn HavenErrors raised by a command into the documented exit codes.

    The command must accept a keyword argument ``as_json`` (the ``--json`` flag).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HavenError as exc:
            raise fail(exc, bool(kwargs.get("as_json", False))) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")

__all__ = ["JSON_OPTION", "ExitCode", "console", "err_console", "fail", "guarded", "print_json"]
