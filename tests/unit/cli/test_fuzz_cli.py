"""Property-based fuzzing of the command line (runs in every test run).

Random argv built from the real command tree (every command path and option name the
Typer app declares) plus hostile values -- numbers out of range, nan, markup, control
characters, arguments that are not UTF-8, binary and endless files -- is run through the
app in-process, in a private HAVEN_HOME and working directory. Properties:

- the exit code is one of the documented ones (0, 2-7), never 1 (an internal error), and
  no exception escapes;
- nothing prints a traceback;
- with ``--json`` anywhere on the command line, stdout is exactly one JSON document.

Left out: ``demo`` (drives the KVM lab) and ``serve`` (runs the scheduler until
``--for``; its option bounds are tested in test_hostile_cli). No token names a FIFO:
password files may be pipes by design (process substitution) and block until written.
Budget: 500 examples (about 30 s on two cores).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.support.cli import EXAMPLE, Ran, invoke
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from haven.cli.main import app

EXCLUDED = {"demo", "serve", "api"}  # long-running servers


@dataclass(frozen=True)
class Shape:
    """One runnable command: its path, its options (name, takes a value), the options it
    needs (required ones and ``--password-file``) and its arguments."""

    path: tuple[str, ...]
    options: tuple[tuple[str, bool], ...]
    needed: tuple[tuple[str, bool], ...]
    arguments: tuple[str, ...]


def command_tree() -> list[Shape]:
    """Every runnable command with its options and arguments, read from the app itself."""
    shapes: list[Shape] = []

    def walk(cmd: object, path: tuple[str, ...]) -> None:
        if isinstance(cmd, TyperGroup):
            for name, sub in cmd.commands.items():
                if name not in EXCLUDED:
                    walk(sub, (*path, name))
            return
        assert isinstance(cmd, TyperCommand)
        options: list[tuple[str, bool]] = []
        needed: list[tuple[str, bool]] = []
        arguments: list[str] = []
        for param in cmd.params:
            if isinstance(param, TyperOption):
                options += [(o, not param.is_flag) for o in (*param.opts, *param.secondary_opts)]
                if param.required or "--password-file" in param.opts:
                    needed.append((param.opts[-1], not param.is_flag))
            elif isinstance(param, TyperArgument):
                arguments.append(str(param.name))
        shapes.append(Shape(path, tuple(options), tuple(needed), tuple(arguments)))

    walk(typer.main.get_command(app), ())
    return sorted(shapes, key=lambda shape: shape.path)


SHAPES = command_tree()
# click adds --help itself (it is not among a command's params)
OPTIONS = sorted({name for shape in SHAPES for name, _ in shape.options} | {"--help"})


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working directory of every run: files the tokens name, a repository with one
    backed-up volume (``repo1``: volume ``disk``, point ``p1``), a catalog holding sites,
    a repository and a policy (no group: DR commands would start real operations)."""
    root = tmp_path_factory.mktemp("fuzz-cli")
    (root / "pw.txt").write_text("fuzzing-passphrase\n")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (root / "partial.yaml").write_bytes(PARTIAL)
    (root / "bad.yaml").write_bytes(b"sites: [\n  {name: a\n")
    (root / "changed.json").write_text(json.dumps([[0, 4096], [65536, 100]]))
    (root / "bad-changed.json").write_text(json.dumps([[0, 4096], [-1, 3], [10**15, 1]]))
    (root / "disk.img").write_bytes(os.urandom(128 * 1024))
    (root / "dir").mkdir()
    common = ["--repo", str(root / "repo1"), "--password-file", str(root / "pw.txt")]
    for argv in (
        ["repo", "init", *common, "--chunk-size", "64KiB"],
        ["volume", "backup", str(root / "disk.img"), "--volume", "disk", "--point", "p1",
         *common],
        ["apply", "-f", str(root / "partial.yaml")],
    ):  # fmt: skip
        assert invoke(root / "home", argv).returncode == 0, argv
    return root


PARTIAL = EXAMPLE.read_bytes().split(b"\ngroups:")[0]  # sites, repositories, policies
FILES = ["pw.txt", "binary.bin", "partial.yaml", "bad.yaml", "changed.json",
         "bad-changed.json", "disk.img", "dir", "missing.yaml", "repo1", "repo2", "key.txt",
         "out.img", "/dev/null", "/dev/zero", "-"]  # fmt: skip
NUMBERS = ["0", "1", "-1", "-3", "7", "nan", "inf", "-inf", "1e400", "9" * 30, "0.5", "1.5",
           "64KiB", "1MiB", "infK", "nanM", "-5M", "50MiB/s", "nan/s", "0/s", "1e309KiB",
           "9" * 5000]  # fmt: skip
NAMES = ["shop", "site-a", "gold", "offsite", "groups", "sites", "plans", "repo", "pg",
         "policies", "repositories", "site", "policy", "disk", "disk@p1", "p1", "op-1",
         "[/x]", "[bold]x[/]", "\x1b[31mred", "a\nb", "", " ", "--", "@", "\x00",
         "\udcff", "caf\udce9", "x" * 300]  # fmt: skip
URLS = ["memory://x", "swift://c/p", "s3://b/p", "ftp://u:pw@h/x", "file:///tmp", "/dev/null"]
ANY = st.one_of(
    st.sampled_from(FILES),
    st.sampled_from(NUMBERS),
    st.sampled_from(NAMES),
    st.sampled_from(OPTIONS),
    st.text(max_size=8),
)
# the values an operator would give each option or argument, so that runs get past
# argument parsing into the commands themselves; ANY keeps a share of nonsense
PREFERRED: dict[str, list[str]] = {
    "--repo": ["repo1", "repo1", "repo2", "dir", "binary.bin", *URLS],
    "--password-file": [
        "pw.txt",
        "pw.txt",
        "pw.txt",
        "binary.bin",
        "/dev/zero",
        "dir",
        "missing.yaml",
        "/dev/null",
        "key.txt",
    ],
    "--key-file": ["key.txt", "binary.bin", "pw.txt", "/dev/zero", "missing.yaml"],
    "-f": ["partial.yaml", "bad.yaml", "binary.bin", "/dev/zero", "dir", "-", "missing.yaml"],
    "--changed": ["changed.json", "bad-changed.json", "binary.bin", "/dev/zero", "dir"],
    "--volume": ["disk", "disk", "other", *NAMES],
    "--parent": ["disk@p1", "disk", "nope", *NAMES],
    "--point": ["p1", "p2", *NAMES],
    "--forget": ["disk@p1", *NAMES],
    "source": ["disk.img", "disk.img", "/dev/zero", "/dev/null", "dir", "missing.yaml"],
    "target": ["out.img", "out.img", "/dev/null", "dir", "shop"],
    "manifest": ["disk", "disk@p1", "disk@p2", *NAMES],
    "kind": ["sites", "repositories", "policies", "groups", "plans", "pg", "widgets", *NAMES],
}
PREFERRED["--file"] = PREFERRED["-f"]


def value_for(name: str) -> st.SearchStrategy[str]:
    preferred = PREFERRED.get(name)
    if preferred is None:
        return st.one_of(st.sampled_from(NUMBERS + NAMES), ANY)
    return st.one_of(st.sampled_from(preferred), st.sampled_from(preferred), ANY)


NINE_IN_TEN = st.sampled_from([True] * 9 + [False])


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    shape = draw(st.sampled_from(SHAPES))
    argv = list(shape.path)
    # an argument or needed option is left out one time in ten (sampled_from rather than
    # integers: hypothesis starts from the first choice, which is "keep it")
    argv += [draw(value_for(name)) for name in shape.arguments if draw(NINE_IN_TEN)]
    chosen = [option for option in shape.needed if draw(NINE_IN_TEN)]
    if shape.options:
        chosen += draw(st.lists(st.sampled_from(shape.options), max_size=4))
    for option, takes_value in chosen:
        argv.append(option)
        if takes_value:
            argv.append(draw(value_for(option)))
    if not draw(NINE_IN_TEN):  # now and then a stray token, first place included
        argv.insert(draw(st.sampled_from(range(len(argv) + 1))), draw(ANY))
    if draw(st.booleans()):
        argv.insert(draw(st.sampled_from(range(len(shape.path), len(argv) + 1))), "--json")
    return argv


STDIN = st.sampled_from([b"", b"\xff\xfe", PARTIAL])


def check(argv: list[str], ran: Ran) -> None:
    assert ran.exception is None, (argv, repr(ran.exception))
    assert ran.returncode in (0, 2, 3, 4, 5, 6, 7), (argv, ran)
    assert "Traceback" not in ran.stdout + ran.stderr, (argv, ran)
    if "--json" in argv:
        try:
            json.loads(ran.stdout)
        except ValueError:
            pytest.fail(f"{argv}: --json printed no single JSON document: {ran.stdout!r}")


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(argv=command_lines(), stdin=STDIN)
def test_random_command_lines(
    argv: list[str], stdin: bytes, place: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(place)
    ran = invoke(place / "home", argv, stdin=stdin)
    check(argv, ran)
    event(f"exit {ran.returncode}")


def test_the_tree_has_the_commands_an_operator_uses() -> None:
    """The fuzzer reaches every command group (else it tests less than it claims)."""
    paths = {shape.path for shape in SHAPES}
    assert {("apply",), ("get",), ("repo", "init"), ("repo", "prune"), ("volume", "backup"),
            ("operations", "list"), ("protect",)} <= paths  # fmt: skip
    assert {"--json", "--repo", "--password-file", "--keep-daily", "--changed"} <= set(OPTIONS)
