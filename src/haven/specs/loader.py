"""Reading a spec into plain YAML data, with errors an operator can act on.

Every input has a bound, enforced before the work it would cost:

- bytes: at most ``MAX_SPEC_BYTES`` (1 MiB) are ever read, from any source (a file is
  read up to the limit + 1 byte, whatever ``stat`` claims); only regular files are
  opened as spec files (never blocking: a FIFO or device is refused, stdin is ``-``);
- text: UTF-8 only;
- nesting: at most ``MAX_DEPTH`` (32) levels of lists and mappings (a real spec needs 8);
- numbers: integers fit in 64 bits (-2^63 .. 2^63-1), floats are finite;
- strings: no control characters (C0, C1, DEL) or lone surrogates, except tab, newline
  and carriage return in ``description`` and ``command`` values;
- YAML features a DR spec has no use for are refused: aliases (*name: "billion
  laughs"), merge keys (<<), duplicate keys (silently last-wins in plain YAML) and
  explicit tags other than ``!!str``, ``!!seq`` and ``!!map``; dates stay strings.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import yaml

from haven.domain.errors import ValidationError
from haven.specs.paths import MAX_REPORTED_PROBLEMS, format_path, too_many_problems

MAX_SPEC_BYTES = 1024 * 1024
MAX_DEPTH = 32
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
# a literal longer than this cannot be a 64-bit integer in any YAML notation (0b + 64
# binary digits is the longest); it is not even converted
_MAX_INT_LITERAL = 66
_MULTILINE_FIELDS = frozenset({"description", "command"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_STRICT = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_ALLOWED_TAGS = frozenset(
    {"!", "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
)
_MERGE_TAG = "tag:yaml.org,2002:merge"
# implicit typing that makes no sense in a spec and fails in odd ways (2020-13-45 raises
# a bare ValueError; a plain "=" has no constructor): such values stay strings
_UNTYPED = frozenset({"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"})


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Oversized:
    """Stands in for an integer literal too long to convert (reported with its field)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _SpecLoader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _UNTYPED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str, where: str) -> None:
        super().__init__(text)
        self.where = where
        self.depth = 0

    def _error(self, mark: Any, message: str) -> ValidationError:
        return ValidationError(
            self.where, f"line {mark.line + 1}, column {mark.column + 1}: {message}"
        )

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise self._error(
                event.start_mark,
                "YAML aliases (*name) are not allowed in Haven specs; write the value out",
            )
        tagged = isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent)
        tag = event.tag if tagged else None
        if tag is not None and tag not in _ALLOWED_TAGS:
            raise self._error(
                event.start_mark,
                f"YAML tag {_short(tag)} is not allowed in Haven specs; remove it",
            )
        nests = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if nests:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self._error(
                    event.start_mark,
                    f"lists and mappings are nested deeper than {MAX_DEPTH} levels",
                )
        try:
            return super().compose_node(parent, index)
        finally:
            if nests:
                self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == _MERGE_TAG:
                raise self._error(
                    key_node.start_mark,
                    "YAML merge keys (<<) are not allowed in Haven specs; write the keys out",
                )
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: refused as unhashable below
            key = self.construct_object(key_node)
            first = seen.setdefault(key, key_node.start_mark)
            if first is not key_node.start_mark:
                raise self._error(
                    key_node.start_mark,
                    f"duplicate key {_short(key)} (first at line {first.line + 1}); "
                    "each key may appear once",
                )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> Any:
        text = self.construct_scalar(node).replace("_", "")
        if len(text) > _MAX_INT_LITERAL:
            return _Oversized(len(text))
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise self._error(node.start_mark, f"{_short(text)} is not a valid number") from None

    def construct_yaml_float(self, node: Any) -> Any:
        try:
            return super().construct_yaml_float(node)
        except ValueError:
            text = self.construct_scalar(node)
            raise self._error(node.start_mark, f"{_short(text)} is not a valid number") from None


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_yaml_int)
_SpecLoader.add_constructor("tag:yaml.org,2002:float", _SpecLoader.construct_yaml_float)


def _kind_of_file(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def read_at_most(stream: Readable | BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``stream`` (fewer at its end); never more are requested."""
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        chunk = stream.read(min(1 << 16, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _too_big(where: str) -> ValidationError:
    return ValidationError(
        where,
        f"the spec is larger than {MAX_SPEC_BYTES // 1024} KiB, the limit "
        "(split it into several files and apply each)",
    )


def read_spec_file(path: Path) -> Any:
    """Return the YAML data in the regular file ``path`` (bounded, UTF-8, no aliases)."""
    where = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ValidationError(where, "file not found") from None
    except OSError as exc:
        raise ValidationError(where, f"cannot read: {exc.strerror}") from None
    except ValueError:  # a NUL character in the path
        raise ValidationError(repr(where), "a path cannot contain a NUL character") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValidationError(
                where,
                f"not a regular file ({_kind_of_file(info.st_mode)}); give a spec file, "
                "or pipe the spec to stdin with '-'",
            )
        if info.st_size > MAX_SPEC_BYTES:
            raise ValidationError(
                where,
                f"spec file is {info.st_size / 1e6:.1f} MB; the limit is "
                f"{MAX_SPEC_BYTES // 1024} KiB (split it into several files and apply each)",
            )
        with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
            raw = read_at_most(f, MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ValidationError(where, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_SPEC_BYTES:  # it grew since fstat
        raise _too_big(where)
    return parse_spec_bytes(raw, where)


def read_spec_stream(stream: Readable | BinaryIO, where: str = "<stdin>") -> Any:
    """Return the YAML data read from ``stream`` (stdin): at most the limit + 1 bytes."""
    try:
        raw = read_at_most(stream, MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ValidationError(where, f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise _too_big(where)
    return parse_spec_bytes(raw, where)


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
    loader: _SpecLoader | None = None
    try:
        loader = _SpecLoader(text, where)  # its reader refuses control characters at once
        data = loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        character = exc.character if isinstance(exc.character, int) else 0
        raise ValidationError(
            where,
            f"invalid YAML at line {line}: character U+{character:04X} is not allowed "
            "(control characters cannot appear in a spec)",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValidationError(where, f"invalid YAML{pos}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ValidationError(where, f"invalid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise ValidationError(where, "the spec is empty")
    return data


def check_values(data: Any) -> list[ValidationError]:
    """Numbers and strings that no field may hold, each reported at its field's path.

    Runs on every document before its shape is checked (``haven.specs.parse_spec``), so
    data built in Python is held to the same bounds as parsed YAML. Iterative: data built
    in Python has no nesting bound."""
    problems: list[ValidationError] = []
    stack: list[tuple[tuple[str | int, ...], Any, bool]] = [((), data, False)]
    while stack:
        if len(problems) >= MAX_REPORTED_PROBLEMS:
            problems.append(too_many_problems())
            break
        loc, value, multiline = stack.pop()
        if isinstance(value, dict):
            items = list(value.items())
            for key, child in reversed(items):
                if _bad_value(key, False) is not None:
                    problems.append(
                        ValidationError(
                            format_path(loc, data) or "(document)",
                            f"key {_short(key)}: {_bad_value(key, False)}",
                        )
                    )
                    continue
                part: str | int = key if isinstance(key, str | int) else str(key)
                stack.append(((*loc, part), child, multiline or key in _MULTILINE_FIELDS))
        elif isinstance(value, list):
            for index in reversed(range(len(value))):
                stack.append(((*loc, index), value[index], multiline))
        else:
            problem = _bad_value(value, multiline)
            if problem is not None:
                problems.append(ValidationError(format_path(loc, data) or "(document)", problem))
    return problems


def _bad_value(value: Any, multiline: bool) -> str | None:
    if isinstance(value, _Oversized):
        return f"a {value.digits}-digit number does not fit in 64 bits"
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        return "the number does not fit in 64 bits (-2^63 .. 2^63-1)"
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number (inf and nan are not allowed)"
    if isinstance(value, str):
        found = (_CONTROL if multiline else _CONTROL_STRICT).search(value)
        if found:
            return (
                f"contains control character U+{ord(found.group()):04X} at position "
                f"{found.start()}; remove it"
            )
    return None
