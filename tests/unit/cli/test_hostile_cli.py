"""The ``haven`` command run as a hostile user would: every attempt ends in a clear error
with the documented exit code (2 bad input, 6 data this version cannot read, 7 key
material), never a traceback, a hang or unbounded memory."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from tests.support.cli import EXAMPLE, Ran, haven, invoke

from haven.domain.errors import SecurityError

# In-process (``invoke``) unless the test needs a real process: raw argv bytes, a umask,
# or a timeout that must hold even if the code under test hangs.


def assert_clean(ran: Ran, code: int) -> None:
    assert ran.returncode == code, (ran.stdout, ran.stderr, ran.exception)
    assert "Traceback" not in ran.stdout + ran.stderr


def one_json_error(ran: Ran, code: int = 2) -> dict[str, object]:
    assert_clean(ran, code)
    doc = json.loads(ran.stdout)  # exactly one document: json.loads refuses trailing data
    error = doc["error"]
    assert error["exit_code"] == code and set(error) >= {"type", "message", "retryable"}
    assert isinstance(error, dict)
    return error


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    assert_clean(invoke(h, ["apply", "-f", str(EXAMPLE)]), 0)
    return h


# --- 1. bytes read ---------------------------------------------------------------------------
def test_apply_from_dev_zero_is_refused_at_once(tmp_path: Path) -> None:
    ran = haven(tmp_path / "h", "apply", "-f", "/dev/zero", timeout=30)
    assert_clean(ran, 2)
    assert "/dev/zero: not a regular file (a device)" in ran.stderr


def test_apply_from_a_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    ran = haven(tmp_path / "h", "apply", "-f", str(fifo), timeout=30)
    assert_clean(ran, 2)
    assert "not a regular file (a FIFO)" in ran.stderr


def test_oversized_stdin_is_refused(tmp_path: Path) -> None:
    ran = invoke(tmp_path / "h", ["apply", "-f", "-"], stdin=b"#" * (8 << 20))
    assert_clean(ran, 2)
    assert "<stdin>: the spec is larger than 1024 KiB" in ran.stderr


# --- 4. arguments that are not UTF-8 ---------------------------------------------------------
def test_an_argument_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """As a shell passes $'\\xff': raw bytes in argv."""
    ran = haven(tmp_path / "h", "describe", "group", b"\xff")
    assert_clean(ran, 2)
    assert "argument 3: is not valid UTF-8 (byte 0xff)" in ran.stderr
    error = one_json_error(haven(tmp_path / "h", "describe", "group", b"\xff", "--json"))
    assert str(error["message"]).startswith("argument 3: is not valid UTF-8")


@pytest.mark.parametrize(
    "args",
    [["apply", "-f", os.fsdecode(b"\xff.yaml")], ["get", os.fsdecode(b"gr\xc3oups"), "--json"]],
)
def test_arguments_that_are_not_utf8_never_reach_a_command(tmp_path: Path, args: list[str]) -> None:
    ran = invoke(tmp_path / "h", args)
    assert_clean(ran, 2)
    assert "is not valid UTF-8" in ran.stdout + ran.stderr
    assert not (tmp_path / "h").exists()


# --- 5. settings and catalogs this version cannot use -------------------------------------------
def test_haven_home_pointing_at_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for where in (afile, afile / "below"):
        ran = invoke(where, ["get", "groups"])
        assert_clean(ran, 2)
        assert "HAVEN_HOME" in ran.stderr and "not a directory" in ran.stderr


def test_haven_home_that_cannot_be_created(tmp_path: Path) -> None:
    ran = invoke(Path("/proc/haven-home"), ["get", "groups", "--json"])
    error = one_json_error(ran)
    assert str(error["message"]).startswith("HAVEN_HOME: cannot create /proc/haven-home")


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:topsecret@db/haven",
        "oracle://u:topsecret@db/haven",
        "mssql+pyodbc://u:topsecret@db/haven",
        "garbage",
        "foo+bar://x",
        "postgresql+asyncpg://u:topsecret@db/haven",
    ],
)
def test_unsupported_catalog_urls(tmp_path: Path, url: str) -> None:
    ran = invoke(tmp_path / "h", ["get", "groups"], env={"HAVEN_CATALOG_URL": url})
    assert_clean(ran, 2)
    assert "HAVEN_CATALOG_URL" in ran.stderr
    assert "sqlite:///" in ran.stderr and "postgresql+psycopg://" in ran.stderr
    assert "topsecret" not in ran.stdout + ran.stderr


def sql(home: Path, *statements: str) -> None:
    with sqlite3.connect(home / "catalog.db") as conn:
        for statement in statements:
            conn.execute(statement)


def test_a_catalog_written_by_a_newer_version(home: Path) -> None:
    sql(home, "UPDATE alembic_version SET version_num = '0099_from_the_future'")
    ran = invoke(home, ["get", "groups"])
    assert_clean(ran, 6)
    assert "'0099_from_the_future'" in ran.stderr and "newer version of Haven" in ran.stderr
    error = one_json_error(invoke(home, ["get", "groups", "--json"]), 6)
    assert error["type"] == "CatalogFormatError"
    # nothing was changed: the newer version can still use it
    with sqlite3.connect(home / "catalog.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("0099_from_the_future",)
        ]


@pytest.mark.parametrize(
    ("statements", "args", "names"),
    [
        (["UPDATE groups SET state = 'exploded'"], ["describe", "group", "shop"], "'exploded'"),
        (
            ["UPDATE sites SET spec = json_set(spec, '$.driver', 'vmware')"],
            ["get", "sites"],
            "'vmware'",
        ),
        (
            [
                "INSERT INTO operations (id, kind, group_name, state, created_at, params, "
                "result, error) VALUES ('op-1', 'teleport', 'shop', 'running', "
                "'2030-01-01 00:00:00', '{}', '{}', '')"
            ],
            ["operations", "list"],
            "'teleport'",
        ),
        (
            [
                "INSERT INTO recovery_points (id, group_name, state, created_at, data) VALUES "
                "('pt-1', 'shop', 'zombie', '2030-01-01 00:00:00', "
                '\'{"id": "pt-1", "group": "shop", "source_site": "site-a", '
                '"created_at": "2030-01-01T00:00:00+00:00", "state": "zombie"}\')'
            ],
            ["points", "shop"],
            "'zombie'",
        ),
    ],
    ids=["group-state", "site-driver", "operation-kind", "point-state"],
)
def test_catalog_rows_with_values_this_version_does_not_know(
    home: Path, statements: list[str], args: list[str], names: str
) -> None:
    sql(home, *statements)
    ran = invoke(home, args)
    assert_clean(ran, 6)
    assert names in ran.stderr and "newer version of Haven" in ran.stderr
    one_json_error(invoke(home, [*args, "--json"]), 6)


# --- 6. password and key files ------------------------------------------------------------
BINARY = bytes(range(256)) * 4


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "binary"
    binary.write_bytes(BINARY)
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    return {"binary": binary, "pw": pw, "repo": tmp_path / "repo", "tmp": tmp_path}


def test_a_binary_password_file_is_key_material_that_is_not_a_key(files: dict[str, Path]) -> None:
    ran = invoke(files["tmp"] / "h", ["repo", "init", "--repo", str(files["repo"]),
                 "--password-file", str(files["binary"])])  # fmt: skip
    assert_clean(ran, 7)
    assert "--password-file" in ran.stderr and "not UTF-8 text" in ran.stderr
    assert "\ufffd" not in ran.stderr and "\\x" not in ran.stderr
    assert not files["repo"].exists()


@pytest.mark.parametrize("source", ["/dev/zero", "dir"])
def test_password_files_are_read_with_a_bound(files: dict[str, Path], source: str) -> None:
    path = files["tmp"] if source == "dir" else Path(source)
    ran = invoke(files["tmp"] / "h", ["repo", "init", "--repo", str(files["repo"]),
                 "--password-file", str(path)])  # fmt: skip
    assert_clean(ran, 2)
    assert "--password-file" in ran.stderr


def test_a_binary_key_file_is_key_material_that_is_not_a_key(files: dict[str, Path]) -> None:
    ran = invoke(files["tmp"] / "h", ["repo", "init", "--repo", str(files["repo"]),
                 "--key-file", str(files["binary"])])  # fmt: skip
    assert_clean(ran, 7)
    assert "not a Haven repository key file" in ran.stderr
    assert_clean(invoke(files["tmp"] / "h", ["repo", "init", "--repo", str(files["repo"]),
                        "--password-file", str(files["pw"])]), 0)  # fmt: skip
    ran = invoke(files["tmp"] / "h", ["volume", "list", "--repo", str(files["repo"]),
                 "--key-file", str(files["binary"]), "--json"])  # fmt: skip
    assert one_json_error(ran, 7)["type"] == "WrongKey"


def test_a_binary_secret_file_named_by_a_spec(tmp_path: Path) -> None:
    from haven.domain.secrets import SecretRef, SecretSource
    from haven.engine.connect import read_secret

    secret = tmp_path / "secret"
    secret.write_bytes(b"\xff\xfe" + b"hunter2" * 10)
    with pytest.raises(SecurityError, match="is not UTF-8 text") as caught:
        read_secret(SecretRef(SecretSource.FILE, str(secret)))
    assert "hunter2" not in str(caught.value)
    with pytest.raises(SecurityError, match="larger than"):
        read_secret(SecretRef(SecretSource.FILE, "/dev/zero"))


# --- 7. values out of range --------------------------------------------------------------
@pytest.fixture
def volume_repo(files: dict[str, Path]) -> dict[str, Path]:
    img = files["tmp"] / "disk.img"
    img.write_bytes(os.urandom(256 * 1024))
    common = ["--repo", str(files["repo"]), "--password-file", str(files["pw"])]
    home = files["tmp"] / "h"
    assert_clean(invoke(home, ["repo", "init", *common, "--chunk-size", "64KiB"]), 0)
    assert_clean(invoke(home, ["volume", "backup", str(img), "--volume", "d", "--point", "p1",
                        *common]), 0)  # fmt: skip
    return {**files, "img": img, "home": home}


@pytest.mark.parametrize(
    ("extents", "expected"),
    [
        ([[0, 10**12]], "beyond the end of the volume (262144 bytes)"),
        ([[262144, 1]], "beyond the end of the volume"),
        ([[-1, 5]], "offset must be >= 0"),
        ([[0, 0]], "length must be > 0"),
        ([[1.5, 2]], "whole numbers"),
        ([[True, 2]], "whole numbers"),
        ({"offset": 0}, "a JSON list"),
        ([[0]], "[offset, length]"),
        ("/dev/zero", "not a regular file"),
    ],
)
def test_changed_extents_must_lie_within_the_volume(
    volume_repo: dict[str, Path], extents: object, expected: str
) -> None:
    changed = volume_repo["tmp"] / "changed.json"
    if isinstance(extents, str):
        changed = Path(extents)
    else:
        changed.write_text(json.dumps(extents))
    ran = invoke(volume_repo["home"], ["volume", "backup", str(volume_repo["img"]), "--volume",
                 "d", "--point", "p2", "--parent", "d@p1", "--changed", str(changed), "--repo",
                 str(volume_repo["repo"]), "--password-file", str(volume_repo["pw"])])  # fmt: skip
    assert_clean(ran, 2)
    assert "--changed" in ran.stderr and expected in ran.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--keep-daily", "-3"),
        ("--keep-last", "-1"),
        ("--keep-hourly", "-1"),
        ("--keep-weekly", "-1"),
        ("--keep-monthly", "-1"),
        ("--repack-threshold", "nan"),
        ("--repack-threshold", "-0.1"),
        ("--repack-threshold", "1.5"),
        ("--repack-threshold", "inf"),
    ],
)
def test_prune_refuses_out_of_range_values_and_deletes_nothing(
    volume_repo: dict[str, Path], option: str, value: str
) -> None:
    common = ["--repo", str(volume_repo["repo"]), "--password-file", str(volume_repo["pw"])]
    ran = invoke(volume_repo["home"], ["repo", "prune", *common, option, value])
    assert_clean(ran, 2)
    assert option in ran.stderr
    listed = invoke(volume_repo["home"], ["volume", "list", *common, "--json"])
    assert [m["point_id"] for m in json.loads(listed.stdout)] == ["p1"]


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "1e300"])
def test_serve_for_must_be_a_finite_non_negative_time(tmp_path: Path, value: str) -> None:
    ran = haven(tmp_path / "h", "serve", "--for", value, timeout=30)
    assert_clean(ran, 2)
    assert "--for" in ran.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--chunk-size", "infK"),
        ("--chunk-size", "nanM"),
        ("--pack-size", "-1M"),
        ("--compression", "99"),
        ("--compression", "-5"),
    ],
)
def test_repo_init_refuses_out_of_range_values(
    files: dict[str, Path], option: str, value: str
) -> None:
    ran = invoke(files["tmp"] / "h", ["repo", "init", "--repo", str(files["repo"]),
                 "--password-file", str(files["pw"]), option, value])  # fmt: skip
    assert_clean(ran, 2)
    assert option in ran.stderr
    assert not files["repo"].exists()


# --- 8. usage errors with --json ---------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["apply", "--json"], "Missing option '-f' / '--file'"),
        (["describe", "--json"], "Missing argument"),
        (["repo", "prune", "--json", "--bogus"], "No such option: --bogus"),
        (["repo", "prune", "--keep-daily", "x", "--json"], "--keep-daily"),
        (["--json"], "No such option: --json"),
        (["no-such-command", "--json"], "No such command"),
        (["apply", "--help", "--json"], "leave out --json"),
    ],
)
def test_usage_errors_with_json_are_one_json_document(
    tmp_path: Path, args: list[str], says: str
) -> None:
    error = one_json_error(invoke(tmp_path / "h", args))
    assert error["type"] == "UsageError" and says in str(error["message"])


def test_usage_errors_in_a_real_process(tmp_path: Path) -> None:
    ran = haven(tmp_path / "h", "repo", "prune", "--bogus")
    assert_clean(ran, 2)
    assert ran.stdout == "" and "No such option: --bogus" in ran.stderr
    error = one_json_error(haven(tmp_path / "h", "repo", "prune", "--bogus", "--json"))
    assert error == {"type": "UsageError", "message": "No such option: --bogus",
                     "retryable": False, "exit_code": 2}  # fmt: skip


# --- 10. files and directories Haven creates are private -------------------------------------
def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_catalog_engine_and_home_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    home = tmp_path / "made" / "by" / "haven"
    # serve first: with groups in the catalog it would go and protect them
    assert_clean(haven(home, "serve", "--for", "0.2", umask=umask), 0)
    assert_clean(haven(home, "apply", "-f", str(EXAMPLE), umask=umask), 0)
    made = modes(tmp_path / "made")
    assert {"by/haven/catalog.db", "by/haven/engine.sqlite"} <= set(made)
    for name, mode in made.items():
        expected = 0o700 if (tmp_path / "made" / name).is_dir() else 0o600
        assert mode == expected, (name, oct(mode))


def test_an_existing_world_readable_catalog_is_made_private(home: Path) -> None:
    (home / "catalog.db").chmod(0o644)
    assert_clean(invoke(home, ["get", "groups"]), 0)
    assert stat.S_IMODE((home / "catalog.db").stat().st_mode) == 0o600


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_local_repositories_are_private_whatever_the_umask(
    files: dict[str, Path], umask: int
) -> None:
    img = files["tmp"] / "disk.img"
    img.write_bytes(os.urandom(200 * 1024))
    repo = files["tmp"] / "new" / "repo"
    common = ["--repo", str(repo), "--password-file", str(files["pw"])]
    home = files["tmp"] / "h"
    assert_clean(haven(home, "repo", "init", *common, "--chunk-size", "64KiB", umask=umask), 0)
    assert_clean(haven(home, "volume", "backup", str(img), "--volume", "d", *common,
                       umask=umask), 0)  # fmt: skip
    made = modes(files["tmp"] / "new")
    assert len(made) > 5
    for name, mode in made.items():
        expected = 0o700 if (files["tmp"] / "new" / name).is_dir() else 0o600
        assert mode == expected, (name, oct(mode))


# --- text from data is never read as Rich markup ------------------------------------------
def test_brackets_in_data_are_shown_not_interpreted(tmp_path: Path) -> None:
    home = tmp_path / "h"
    spec = tmp_path / "spec.yaml"
    spec.write_text(EXAMPLE.read_text().replace("/var/lib/haven/repos/offsite", "/srv/[/x]"))
    assert_clean(invoke(home, ["apply", "-f", str(spec)]), 0)
    listed = invoke(home, ["get", "repositories"])
    assert_clean(listed, 0)
    assert "/srv/[/x]" in listed.stdout
    points = invoke(home, ["points", "[/x][bold]"])  # an unknown group: exit 3, name shown
    assert_clean(points, 3)
    assert "no group named '[/x][bold]'" in points.stderr
    weird = tmp_path / "[/x]"
    ran = invoke(weird, ["get", "groups"])
    assert_clean(ran, 0)
    assert_clean(invoke(weird, ["config", "show"]), 0)


def test_a_nul_character_in_an_argument(tmp_path: Path) -> None:
    """Found by the CLI fuzzer: ``apply -f '\\x00'`` raised ValueError (exit 1)."""
    for args in (["apply", "-f", "\x00"], ["describe", "group", "a\x00b", "--json"]):
        ran = invoke(tmp_path / "h", args)
        assert_clean(ran, 2)
        assert "contains a NUL character" in ran.stdout + ran.stderr


def test_credentials_stored_by_an_older_version_are_never_shown(home: Path) -> None:
    secret = "older-version-secret"
    sql(
        home,
        "UPDATE repositories SET spec = json_set(spec, '$.url', "
        f"'swift://admin:{secret}@swift.example/c?token={secret}')",
        f"UPDATE sites SET spec = json_set(spec, '$.uri', 'qemu+tcp://u:{secret}@h/system')",
    )
    for args in (["get", "repositories"], ["get", "repositories", "--json"],
                 ["describe", "repo", "offsite", "--json"], ["get", "sites"],
                 ["describe", "site", "site-a"]):  # fmt: skip
        ran = invoke(home, args)
        assert_clean(ran, 0)
        assert secret not in ran.stdout + ran.stderr
        assert "***" in ran.stdout
