"""Specs written to hurt: every one ends in a ValidationError naming the place and the
fix, in bounded time and memory, never in another exception."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.cli import EXAMPLE

from haven.domain.errors import ValidationError, ValidationErrors
from haven.specs import load_spec, load_spec_bytes, validate
from haven.specs.loader import MAX_DEPTH, MAX_SPEC_BYTES
from haven.specs.schema import MAX_MEMBERS, MAX_STAGES


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return data


def problems(raw: bytes | dict[str, Any]) -> list[str]:
    if isinstance(raw, dict):
        raw = yaml.safe_dump(raw).encode()
    try:
        validate(load_spec_bytes(raw).resources)
    except ValidationErrors as exc:
        return [str(e) for e in exc.errors]
    except ValidationError as exc:
        return [str(exc)]
    return []


def one(raw: bytes | dict[str, Any]) -> str:
    msgs = problems(raw)
    assert len(msgs) == 1, msgs
    return msgs[0]


# --- bytes read -------------------------------------------------------------------------
def test_a_character_device_is_refused_without_reading_it() -> None:
    with pytest.raises(ValidationError, match=r"/dev/zero: not a regular file \(a device\)"):
        load_spec(Path("/dev/zero"))


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValidationError, match=r"not a regular file \(a FIFO\).*stdin"):
        load_spec(fifo)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"not a regular file \(a directory\)"):
        load_spec(tmp_path)


def test_bytes_beyond_the_limit_are_never_held(tmp_path: Path) -> None:
    """A spec read from a stream stops at the limit (+1 byte to know it is exceeded)."""
    read: list[int] = []

    class Endless:
        def read(self, n: int = -1) -> bytes:
            assert n > 0, "the whole stream must never be asked for"
            read.append(n)
            return b"#" * n

    from haven.specs import load_spec_stream

    with pytest.raises(ValidationError, match=r"<stdin>: the spec is larger than 1024 KiB"):
        load_spec_stream(Endless(), "<stdin>")
    assert sum(read) <= MAX_SPEC_BYTES + 1


# --- nesting, numbers, sizes --------------------------------------------------------------
@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deep_nesting_is_refused(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    raw = (f"sites: {opener * 10_000}1{closer * 10_000}\n").encode()
    msg = one(raw)
    assert f"nested deeper than {MAX_DEPTH} levels" in msg and "line 1" in msg


def test_nesting_just_under_the_limit_reaches_the_schema() -> None:
    raw = ("sites: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n").encode()
    assert "nested deeper" not in " ".join(problems(raw))


def test_a_5000_digit_integer_is_refused_with_its_field() -> None:
    data = example()
    raw = yaml.safe_dump(data).replace("keep_last: 5", "keep_last: " + "9" * 5000).encode()
    msg = one(raw)
    assert msg.startswith("policies.gold.retention.keep_last: ")
    assert "does not fit in 64 bits" in msg and "9" * 30 not in msg


def test_an_integer_just_beyond_64_bits_is_refused() -> None:
    data = example()
    data["policies"][0]["retention"]["keep_last"] = 2**63
    assert one(data).startswith("policies.gold.retention.keep_last: ")


@pytest.mark.parametrize("value", ["1.0e+400", "-1.0e+400", ".inf", ".nan", "-.inf"])
def test_non_finite_numbers_are_refused_with_their_field(value: str) -> None:
    raw = EXAMPLE.read_bytes().replace(b"rpo: 5m", f"rpo: {value}".encode())
    msg = one(raw)
    assert msg.startswith("policies.gold.rpo: ") and "not a finite number" in msg


def test_a_huge_but_finite_duration_is_refused() -> None:
    raw = EXAMPLE.read_bytes().replace(b"rpo: 5m", b"rpo: 1.0e+300")
    assert "policies.gold.rpo: " in one(raw) and "at most" in one(raw)
    raw = EXAMPLE.read_bytes().replace(b"rpo: 5m", b"rpo: 99999999999999w")
    assert one(raw).startswith("policies.gold.rpo: ")


def test_a_number_as_a_mapping_key_is_checked_too() -> None:
    raw = EXAMPLE.read_bytes().replace(b"prod-net: dr-net", b".nan: dr-net")
    assert "not a finite number" in " ".join(problems(raw))


def test_too_many_stages() -> None:
    data = example()
    plan = data["plans"][0]
    plan["stages"] = [{"servers": [f"s{i}"]} for i in range(MAX_STAGES + 1)]
    msg = one(data)
    assert msg.startswith("plans.shop.stages: ") and f"at most {MAX_STAGES}" in msg


def test_too_many_members() -> None:
    data = example()
    data["groups"][0]["members"] = [{"server": f"s{i}"} for i in range(MAX_MEMBERS + 1)]
    assert f"at most {MAX_MEMBERS}" in " ".join(problems(data))


def test_a_3000_stage_dependency_chain_is_refused_by_its_size_not_a_crash() -> None:
    data = example()
    n = 3000
    data["groups"][0]["members"] = [{"server": f"s{i}"} for i in range(n)]
    data["plans"][0]["stages"] = [
        {"servers": [f"s{i}"], "depends_on": [f"s{i - 1}"] if i else []} for i in range(n)
    ]
    msgs = problems(data)
    assert any(f"at most {MAX_STAGES}" in m for m in msgs), msgs


def test_the_longest_allowed_chain_validates() -> None:
    data = example()
    n = min(MAX_STAGES, MAX_MEMBERS)
    data["groups"][0]["members"] = [{"server": f"s{i}"} for i in range(n)]
    data["plans"][0]["stages"] = [
        {"servers": [f"s{i}"], "depends_on": [f"s{i - 1}"] if i else []} for i in range(n)
    ]
    data["plans"][0]["checks"] = [{"type": "agent", "server": "s0"}]
    assert problems(data) == []
    # and closing the chain is reported as a cycle, not a RecursionError
    data["plans"][0]["stages"][0]["depends_on"] = [f"s{n - 1}"]
    msg = one(data)
    assert f"boot-order cycle: s0 -> s{n - 1} -> s{n - 2} -> " in msg
    assert f"({n + 1 - 11} more) -> s2 -> s1 -> s0 (break one dependency)" in msg


# --- what validation used to let through -----------------------------------------------------
def test_duplicate_keys_are_refused_with_the_line_and_key() -> None:
    raw = b"policies:\n  - name: a\n    rpo: 1m\n    rpo: 2m\n"
    assert one(raw) == (
        "<stdin>: line 4, column 5: duplicate key 'rpo' (first at line 3); each key may appear once"
    )


def test_duplicate_top_level_kinds_are_refused() -> None:
    raw = b"sites: []\npolicies: []\nsites: []\n"
    assert "duplicate key 'sites' (first at line 1)" in one(raw)


def test_yaml_merge_keys_are_refused() -> None:
    raw = b"policies:\n  - name: a\n    <<: {rpo: 1m}\n"
    assert "merge keys (<<) are not allowed" in one(raw)


@pytest.mark.parametrize("name", ["gold\n", "gold\r", "go\x00ld", "go\x1bld", "gold\u0085"])
def test_names_with_control_characters_are_refused(name: str) -> None:
    data = example()
    data["policies"][0]["name"] = name
    data["groups"][0]["policy"] = name
    msgs = problems(data)
    assert msgs and all("policies" in m or "groups" in m for m in msgs), msgs
    assert any("control character" in m or "not a valid name" in m for m in msgs), msgs


def test_control_characters_in_any_string_are_refused() -> None:
    data = example()
    data["plans"][0]["mappings"]["networks"] = {"prod-net": "dr\x1b[2Jnet"}
    assert one(data).startswith("plans.shop.mappings.networks.prod-net: ")
    assert "control character U+001B" in one(data)


def test_a_lone_surrogate_from_a_yaml_escape_is_refused() -> None:
    raw = EXAMPLE.read_bytes().replace(b"description: production", b'description: "\\ud800"')
    assert one(raw).startswith("sites.site-a.description: ")


def test_multi_line_descriptions_and_commands_stay_allowed() -> None:
    data = example()
    data["sites"][0]["description"] = "line one\nline two\twith a tab"
    data["groups"][0]["members"][0]["hooks"]["pre_freeze"][0]["command"] = "sync\nsync"
    assert problems(data) == []


SECRET = "hunter2-very-secret"


@pytest.mark.parametrize(
    ("kind", "field", "url"),
    [
        ("repositories", "url", f"swift://user:{SECRET}@host/container/prefix"),
        ("repositories", "url", f"s3://AKIAXXXX:{SECRET}@bucket/prefix"),
        ("repositories", "url", f"https://u:{SECRET}@example.com/repo"),
        ("repositories", "url", f"swift://container/prefix?password={SECRET}"),
        ("sites", "uri", f"qemu+ssh://root:{SECRET}@host/system"),
        ("sites", "uri", f"qemu+tcp://host/system?token={SECRET}"),
    ],
)
def test_credentials_in_urls_are_refused_without_echoing_them(
    kind: str, field: str, url: str
) -> None:
    data = example()
    data[kind][0][field] = url
    msg = one(data)
    assert msg.startswith(f"{kind}.{data[kind][0]['name']}.{field}: ")
    assert "credentials" in msg and "password" in msg
    assert SECRET not in msg


def test_a_user_name_without_password_stays_allowed() -> None:
    data = example()
    data["sites"][0]["uri"] = "qemu+ssh://root@host/system?keyfile=/etc/haven/id"
    assert problems(data) == []


# --- the same input gives the same message ------------------------------------------------
CYCLIC_PLAN = """
import sys
from pathlib import Path
import yaml
from haven.domain.errors import ValidationErrors
from haven.specs import load_spec_bytes, validate
data = yaml.safe_load(Path(sys.argv[1]).read_text())
data["groups"][0]["members"] = [{"server": s} for s in ("a", "b", "c", "d", "e", "f")]
data["plans"][0]["checks"] = [{"type": "agent", "server": "a"}]
data["plans"][0]["stages"] = [
    {"servers": ["a"], "depends_on": ["f", "d", "b", "e", "c"]},
    {"servers": ["b"], "depends_on": ["a"]},
    {"servers": ["c"], "depends_on": ["a"]},
    {"servers": ["d"], "depends_on": ["e"]},
    {"servers": ["e"], "depends_on": ["d"]},
    {"servers": ["f"], "depends_on": ["a"]},
]
try:
    validate(load_spec_bytes(yaml.safe_dump(data).encode()).resources)
except ValidationErrors as exc:
    print(exc)
"""


def test_cycle_reports_do_not_depend_on_hash_seeds() -> None:
    outputs = set()
    for seed in ("0", "1", "2", "3", "42", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", CYCLIC_PLAN, str(EXAMPLE)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        outputs.add(proc.stdout)
    assert len(outputs) == 1, outputs
    (out,) = outputs
    assert out.strip() == (
        "plans.shop.stages[0].depends_on: boot-order cycle: a -> b -> a (break one dependency)"
    )


def test_a_nul_character_in_a_spec_path() -> None:
    with pytest.raises(ValidationError, match="cannot contain a NUL character"):
        load_spec(Path("spec\x00.yaml"))
