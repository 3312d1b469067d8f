"""Reading a spec file into plain YAML data, with errors an operator can act on.

Limits: a spec file is at most ``MAX_SPEC_BYTES`` (1 MiB) and must be UTF-8; YAML
aliases are refused (they are how "billion laughs" documents blow up memory, and a
DR spec has no need for them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from haven.domain.errors import ValidationError

MAX_SPEC_BYTES = 1024 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            mark = event.start_mark
            raise ValidationError(
                f"line {mark.line + 1}, column {mark.column + 1}",
                "YAML aliases (*name) are not allowed in Haven specs; write the value out",
            )
        return super().compose_node(parent, index)


def read_spec_file(path: Path) -> Any:
    """Return the YAML data in ``path`` (bounded in size, UTF-8, no aliases)."""
    where = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ValidationError(where, "file not found") from None
    except OSError as exc:
        raise ValidationError(where, f"cannot read: {exc.strerror}") from None
    if size > MAX_SPEC_BYTES:
        raise ValidationError(
            where,
            f"spec file is {size / 1e6:.1f} MB; the limit is {MAX_SPEC_BYTES // 1024} KiB "
            "(split it into several files and apply each)",
        )
    return parse_spec_bytes(path.read_bytes(), where)


def parse_spec_bytes(raw: bytes, where: str = "<stdin>") -> Any:
    if len(raw) > MAX_SPEC_BYTES:
        raise ValidationError(
            where, f"spec is {len(raw) / 1e6:.1f} MB; the limit is {MAX_SPEC_BYTES // 1024} KiB"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValidationError(
            where,
            f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}); "
            "save the file as UTF-8",
        ) from None
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValidationError(where, f"invalid YAML{pos}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ValidationError(where, f"invalid YAML: {exc}") from None
    if data is None:
        raise ValidationError(where, "the spec is empty")
    return data
