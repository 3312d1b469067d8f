"""Field paths as operators read them: ``plans.erp.stages[1].depends_on``.

Items of the top-level lists are addressed by their name when they have one, other
list items by index. A name or key that is not printable text (control characters, a
newline) is shown as a quoted repr, so a path can never carry terminal escapes or
split a message over lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from haven.domain.errors import ValidationError, ValidationErrors

_TOP_LEVEL = {"sites", "repositories", "policies", "groups", "plans"}
# one pass reports at most this many problems (a 500,000-item list of wrong values must
# not produce 500,000 lines); fixing them reveals the rest
MAX_REPORTED_PROBLEMS = 50
_MAX_NAME_IN_PATH = 63


def format_path(loc: Sequence[str | int], raw: Any = None) -> str:
    out = ""
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            name = _item_name(raw, loc[0], part) if depth == 1 and loc[0] in _TOP_LEVEL else None
            out += f".{name}" if name else f"[{part}]"
        elif not _plain(part):
            out += f"[{_short(part)}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _plain(text: str) -> bool:
    return text.isprintable() and 0 < len(text) <= _MAX_NAME_IN_PATH


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _item_name(raw: Any, top: str | int, index: int) -> str | None:
    try:
        name = raw[top][index]["name"]
    except (KeyError, IndexError, TypeError):
        return None
    return name if isinstance(name, str) and _plain(name) else None


def _message(err: Any) -> str:
    kind = err["type"]
    value = err.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping, got {_describe(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {_describe(value)}"
    if kind == "too_long":
        ctx = err.get("ctx") or {}
        return (
            f"at most {ctx.get('max_length')} items are allowed "
            f"(got {ctx.get('actual_length') or 'more'}); split it up"
        )
    if kind == "literal_error":
        return f"{_describe(value)} is not allowed; {err['msg'].replace('Input should be', 'use')}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, ") :]
    return f"{msg[0].lower()}{msg[1:]} (got {_describe(value)})"


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 128:  # repr() may refuse it
        return "a number this large"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def too_many_problems() -> ValidationError:
    return ValidationError(
        "(document)", f"more problems not shown (the first {MAX_REPORTED_PROBLEMS} are)"
    )


def from_pydantic(exc: PydanticValidationError, raw: Any) -> ValidationErrors:
    """Convert pydantic's errors into Haven's, with operator-readable paths."""
    problems: list[ValidationError] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        if len(problems) >= MAX_REPORTED_PROBLEMS:
            problems.append(too_many_problems())
            break
        loc = [p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]
        problem = ValidationError(format_path(loc, raw), _message(err))
        if str(problem) not in seen:
            seen.add(str(problem))
            problems.append(problem)
    return ValidationErrors(problems)
