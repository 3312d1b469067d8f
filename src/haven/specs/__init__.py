"""Declarative specs: parse and validate the YAML operators write.

Public surface::

    doc = load_spec(path)              # Spec: resources + raw data, shape-checked
    doc = load_spec_stream(sys.stdin.buffer)   # the same from a stream (bounded read)
    problems = validate(merged)        # cross-resource checks on catalog + spec
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from haven.domain.errors import ValidationError, ValidationErrors
from haven.domain.resources import Resources
from haven.specs import semantic
from haven.specs.convert import to_resources
from haven.specs.loader import (
    Readable,
    check_values,
    parse_spec_bytes,
    read_spec_file,
    read_spec_stream,
)
from haven.specs.paths import from_pydantic
from haven.specs.schema import SpecDocument


@dataclass(frozen=True)
class Spec:
    resources: Resources
    raw: Any


def parse_spec(data: Any) -> Spec:
    """Shape-check YAML data; raise ValidationErrors listing every problem found."""
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        raise ValidationErrors(
            [
                ValidationError(
                    "(document)",
                    f"expected a mapping of kinds (sites, repositories, "
                    f"policies, groups, plans), got {kind}",
                )
            ]
        )
    bad_values = check_values(data)
    if bad_values:
        raise ValidationErrors(bad_values)
    problems = semantic.duplicate_names(data)
    try:
        doc = SpecDocument.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationErrors(problems + from_pydantic(exc, data).errors) from None
    if problems:
        raise ValidationErrors(problems)
    try:
        return Spec(to_resources(doc), data)
    except ValueError as exc:  # a domain invariant the schema did not catch
        raise ValidationErrors([ValidationError("(document)", str(exc))]) from None


def load_spec(path: Path) -> Spec:
    return parse_spec(read_spec_file(path))


def load_spec_stream(stream: Readable, where: str = "<stdin>") -> Spec:
    return parse_spec(read_spec_stream(stream, where))


def load_spec_bytes(raw: bytes, where: str = "<stdin>") -> Spec:
    return parse_spec(parse_spec_bytes(raw, where))


def validate(merged: Resources, applying: Resources | None = None) -> None:
    """Raise ValidationErrors if the merged configuration is inconsistent.

    ``applying`` is the spec being applied: where it conflicts with what the catalog
    already holds, the error is reported against the spec's resource.
    """
    incoming = frozenset(g.name for g in applying.groups) if applying else frozenset()
    problems = semantic.check(merged, incoming)
    if problems:
        raise ValidationErrors(problems)


__all__ = ["Spec", "load_spec", "load_spec_bytes", "load_spec_stream", "parse_spec", "validate"]
