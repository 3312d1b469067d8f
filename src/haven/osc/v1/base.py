"""What every ``openstack dr`` command shares: the API client from osc's client
manager, API errors turned into one stderr line and the API's exit code (never a
traceback), and a column type for nested values (readable in a table, raw in
``-f json|yaml``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from typing import Any

from cliff import columns
from osc_lib.command import command

from haven.osc.client import DrClient, DrError

Row = tuple[Any, ...]


class Structured(columns.FormattableColumn[Any]):
    """A list or mapping: ``a, b`` / ``k=v, ...`` in tables and ``-f value``; the JSON
    value itself in ``-f json`` and ``-f yaml``."""

    def human_readable(self) -> str:
        return _text(self._value)

    def machine_readable(self) -> Any:
        return self._value


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        if all(isinstance(v, str | int | float) for v in value):
            return ", ".join(str(v) for v in value)
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def cell(value: Any) -> Any:
    return Structured(value) if isinstance(value, dict | list) else value


class Guarded:
    """Mixed in before a cliff command class: a :class:`DrError` is printed (the API's
    message and request id) and its exit code returned; a command may set
    ``self.exit_code`` (e.g. an operation that failed) after printing its output."""

    exit_code = 0
    app: Any

    def run(self, parsed_args: argparse.Namespace) -> int:
        try:
            rc = int(super().run(parsed_args))  # type: ignore[misc]
        except DrError as exc:
            self.app.stderr.write(f"Error: {exc}\n")
            return exc.exit_code
        return rc or self.exit_code

    @property
    def dr(self) -> DrClient:
        client: DrClient = self.app.client_manager.dr
        return client


class DrLister(Guarded, command.Lister):
    pass


class DrShowOne(Guarded, command.ShowOne):
    pass


def table(
    fields: Sequence[tuple[str, str]], items: Iterable[dict[str, Any]]
) -> tuple[tuple[str, ...], list[Row]]:
    """(headers, rows) of ``items`` by (key, header) pairs, nested values as Structured."""
    headers = tuple(h for _, h in fields)
    return headers, [tuple(cell(item.get(k)) for k, _ in fields) for item in items]


def record(item: dict[str, Any]) -> tuple[tuple[str, ...], Row]:
    """A ShowOne's (names, values): every field of ``item`` in its order."""
    return tuple(item), tuple(cell(v) for v in item.values())
