"""Checks for numeric options that typer's ``min``/``max`` cannot express.

A ``FloatRange`` lets nan through (every comparison with nan is false), so float options
also take :func:`finite` as their callback. A failed check is a click usage error: exit
2, as a JSON error document under ``--json``.
"""

from __future__ import annotations

import math

import typer


def finite(value: float | None) -> float | None:
    """Option callback: refuse nan and +-inf."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value
