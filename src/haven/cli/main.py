"""The ``haven`` command: one Typer app, one module per command group.

A command group module lives in ``haven/cli/<name>.py`` and exposes ``app: typer.Typer``
(with ``help=``); list it in ``GROUPS`` to mount it as ``haven <name>``. Top-level
commands (apply, get, describe, demo, status) are registered by ``register(root)``
functions in the modules named in ``TOP_LEVEL``.
"""

from __future__ import annotations

import importlib

import typer

GROUPS: tuple[str, ...] = ("config", "repo", "volume", "operations")
TOP_LEVEL: tuple[str, ...] = ("resources", "dr", "status", "demo")

app = typer.Typer(
    name="haven",
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
