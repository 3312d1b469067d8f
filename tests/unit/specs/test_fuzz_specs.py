"""Property-based fuzzing of the spec loader and validation (runs in every test run).

The only allowed outcomes for any input are success or a HavenError (a validation error
naming the place); any other exception is a bug. Every message is also checked to be
printable: no terminal escapes or other control characters may reach an operator's
screen through an error. Budget: 500 examples per target, no deadline (about 5 s in all).
"""

from __future__ import annotations

import random
import re
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.support.cli import EXAMPLE

from haven.domain.errors import HavenError, ValidationError, ValidationErrors
from haven.specs import load_spec_bytes, parse_spec, validate

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXAMPLE_TEXT = EXAMPLE.read_text()
EXAMPLE_DATA: dict[str, Any] = yaml.safe_load(EXAMPLE_TEXT)
_UNPRINTABLE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def outcome(run: Any) -> str:
    """Run ``run()``: "ok" or "refused"; anything but a HavenError fails the test."""
    try:
        run()
    except HavenError as exc:
        problems = exc.errors if isinstance(exc, ValidationErrors) else [exc]
        for problem in problems:
            text = str(problem)
            assert not _UNPRINTABLE.search(text), text
            if isinstance(problem, ValidationError):
                assert "\n" not in problem.path, problem.path
        return "refused"
    return "ok"


def from_bytes(raw: bytes) -> str:
    return outcome(lambda: validate(load_spec_bytes(raw).resources))


def from_data(data: Any) -> str:
    return outcome(lambda: validate(parse_spec(data).resources))


# --- (a1) arbitrary text and bytes ----------------------------------------------------------
@settings(FUZZ, max_examples=500)
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400).map(lambda b: b.decode("latin-1"))))
def test_arbitrary_text(text: str) -> None:
    event(from_bytes(text.encode("utf-8", "surrogatepass")))


YAML_PIECES = [
    "sites:", "policies:", "groups:", "plans:", "repositories:", "- ", "  ", "\n", ": ",
    "[", "]", "{", "}", ",", "&a ", "*a", "<<: ", "!!binary ", "!!python/object ", "! ",
    "!!str ", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!set ", "? ", "|", ">",
    "'", '"', "#", "---", "...", "%YAML 1.1", "name: ", "rpo: ", "1e400", ".nan", "-.inf",
    "0x_", "0b_", "._", "1:2:3", "2020-13-45", "9" * 80, "\\ud800", "\\x1b", "\t", "~",
    "yes", "=", "url: ", "swift://u:p@h/c",
]  # fmt: skip


@settings(FUZZ, max_examples=500)
@given(st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=8), max_size=40))
def test_yaml_token_soup(pieces: list[str]) -> None:
    event(from_bytes("".join(pieces).encode("utf-8", "surrogatepass")))


# --- (a2) YAML-ish structures ---------------------------------------------------------------
KEYS = st.sampled_from(
    ["name", "sites", "repositories", "policies", "groups", "plans", "url", "uri", "driver",
     "rpo", "interval", "members", "server", "stages", "servers", "depends_on", "retention",
     "keep_last", "password", "env", "file", "chunk_size", "labels", "description", "command",
     "hooks", "pre_freeze", "timeout", "port", "type", "gates", "checks", "mappings"]
) | st.text(max_size=12)  # fmt: skip

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from([2**63, -(2**63) - 1, 2**63 - 1]),
    st.integers(0, 3).map(lambda k: 10 ** (5000 + k)),  # beyond int-to-str conversion
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Zl", "Zp"]), max_size=5),
    st.sampled_from(
        [
            "5m",
            "1.0e+300s",
            "99999999999999w",
            "64MiB",
            "50MiB/s",
            "gold",
            "site-a",
            "shop",
            "db",
            "libvirt",
            "fake",
            "agent",
            "tcp",
            "swift://u:secret@h/c",
            "/srv/[/x]",
            "x" * 5000,
        ]
    ),
)

STRUCTURES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=40,
)


@settings(FUZZ, max_examples=500)
@given(STRUCTURES)
def test_arbitrary_structures(data: Any) -> None:
    event(from_data(data))
    try:
        raw = yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, ValueError, RecursionError):
        return  # not every Python value has a YAML form
    from_bytes(raw)


# --- (a3) mutations of examples/three-tier.yaml ---------------------------------------------
def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths(value, (*prefix, index))
    return found


EXAMPLE_PATHS = paths(EXAMPLE_DATA)


def replaced(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        return {**data, head: replaced(data[head], rest, value)}
    copy = list(data)
    copy[head] = replaced(copy[head], rest, value)
    return copy


@settings(FUZZ, max_examples=500)
@given(st.sampled_from(EXAMPLE_PATHS), STRUCTURES)
def test_example_with_one_value_replaced(path: tuple[Any, ...], value: Any) -> None:
    event(from_data(replaced(EXAMPLE_DATA, path, value)))


MUTATIONS = ["insert", "delete", "replace", "duplicate-line", "drop-line", "swap-lines"]


@settings(FUZZ, max_examples=500)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(MUTATIONS),
            st.integers(0, 10**6),
            st.sampled_from(YAML_PIECES) | st.text(max_size=6),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_example_text_mutated(mutations: list[tuple[str, int, str]]) -> None:
    text = EXAMPLE_TEXT
    for kind, where, piece in mutations:
        lines = text.split("\n")
        at, line = where % (len(text) + 1), where % len(lines)
        if kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + len(piece) + 1 :]
        elif kind == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        elif kind == "duplicate-line":
            text = "\n".join([*lines[: line + 1], lines[line], *lines[line + 1 :]])
        elif kind == "drop-line":
            text = "\n".join(lines[:line] + lines[line + 1 :])
        else:
            other = random.Random(where).randrange(len(lines))
            lines[line], lines[other] = lines[other], lines[line]
            text = "\n".join(lines)
    event(from_bytes(text.encode("utf-8", "surrogatepass")))


def test_the_unmutated_example_is_accepted() -> None:
    """The mutation targets start from a valid spec (else they test nothing)."""
    assert from_bytes(EXAMPLE_TEXT.encode()) == "ok"
    assert from_data(EXAMPLE_DATA) == "ok"
    assert len(EXAMPLE_PATHS) > 50
