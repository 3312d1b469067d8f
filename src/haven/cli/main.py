"""The ``haven`` command: one Typer app, one module per command group.

A command group module lives in ``haven/cli/<name>.py`` and exposes ``app: typer.Typer``
(with ``help=``); list it in ``GROUPS`` to mount it as ``haven <name>``. Top-level
commands (apply, get, describe, demo, status) are registered by ``register(root)``
functions in the modules named in ``TOP_LEVEL``.

The command line is checked before click parses it (:class:`HavenGroup`):

- every argument must be valid UTF-8 (a name or path that is not cannot be stored,
  compared or shown) without NUL characters (no OS hands those over; a caller in Python
  could, and no path or name may hold one): exit 2 naming the argument;
- with ``--json`` anywhere on it, a usage error (missing argument, unknown option, bad
  option value) is one JSON error document on stdout, exit 2, like every other error;
  ``--help`` together with ``--json`` is such an error (help is text).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from haven.cli.output import UsageError, fail, json_requested
from haven.domain.errors import ValidationError

GROUPS: tuple[str, ...] = ("config", "repo", "volume", "operations", "quota", "keys")
TOP_LEVEL: tuple[str, ...] = ("resources", "dr", "status", "demo", "usage", "api")
JSON_FLAG = "--json"
HELP_FLAGS = frozenset({"--help"})


def _not_utf8(argv: Sequence[str]) -> ValidationError | None:
    """The first argument that is not UTF-8 (Python hands those over as surrogates) or
    holds a NUL character."""
    for position, arg in enumerate(argv, start=1):
        if "\x00" in arg:
            return ValidationError(
                f"argument {position}", "contains a NUL character, which no name or path may"
            )
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(arg[exc.start])
            byte = f" (byte 0x{code - 0xDC00:02x})" if 0xDC80 <= code <= 0xDCFF else ""
            return ValidationError(
                f"argument {position}",
                f"is not valid UTF-8{byte} at character {exc.start + 1}; Haven's names, "
                "paths and values must be UTF-8 (rename the file or fix the locale)",
            )
    return None


class HavenGroup(TyperGroup):
    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = JSON_FLAG in argv
        token = json_requested.set(as_json)
        try:
            code = self._refuse(argv, as_json)
            if code is None and not as_json:
                return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
            if code is None:
                try:
                    rv = super().main(argv, prog_name, complete_var, False, **extra)
                    code = rv if isinstance(rv, int) else 0
                except typer.TyperException as exc:  # click's usage errors derive from it
                    code = fail(UsageError(exc.format_message()), True).exit_code
                except typer.Abort:
                    code = fail(UsageError("aborted (end of input)"), True).exit_code
        finally:
            json_requested.reset(token)
        if standalone_mode:
            sys.exit(code)
        return code

    @staticmethod
    def _refuse(argv: list[str], as_json: bool) -> int | None:
        problem: ValidationError | None = _not_utf8(argv)
        if problem is None and as_json and HELP_FLAGS.intersection(argv):
            problem = UsageError("--help prints text; leave out --json to read the help")
        return None if problem is None else fail(problem, as_json).exit_code


app = typer.Typer(
    name="haven",
    cls=HavenGroup,
    help="Haven: disaster recovery for OpenStack and KVM clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _mount() -> None:
    for name in GROUPS:
        module = importlib.import_module(f"haven.cli.{name}")
        app.add_typer(module.app, name=name)
    for name in TOP_LEVEL:
        module = importlib.import_module(f"haven.cli.{name}")
        module.register(app)


_mount()


def main() -> None:
    from haven.observability.logging import configure

    configure()
    app()
