from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from haven.cli.main import app

KiB = 1024
runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = runner.invoke(app, list(args), env=env)
    return res.exit_code, res.stdout


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, str]:
    pw = tmp_path / "pw"
    pw.write_text("s3cret-passphrase\n")
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(3 * 1024 * KiB)
        f.write(os.urandom(200 * KiB))
        f.seek(2 * 1024 * KiB)
        f.write(b"hello world " * 10000)
    return {"repo": str(tmp_path / "repo"), "pw": str(pw), "img": str(img), "tmp": str(tmp_path)}


def test_cli_full_cycle(setup: dict[str, str]) -> None:
    r, pw = ["--repo", setup["repo"]], ["--password-file", setup["pw"]]
    code, out = _run(
        "repo", "init", *r, *pw, "--chunk-size", "64KiB", "--pack-size", "512KiB", "--json"
    )
    assert code == 0, out
    assert json.loads(out)["chunk_size"] == 64 * KiB
    assert "s3cret" not in out
    code, out = _run(
        "volume", "backup", setup["img"], "--volume", "disk", "--point", "p1", *r, *pw, "--json"
    )
    assert code == 0, out
    first = json.loads(out)
    assert first["stats"]["chunks_new"] > 0
    # incremental with a changed-extent list
    with open(setup["img"], "r+b") as f:
        f.seek(100)
        f.write(b"CHANGED")
    changed = Path(setup["tmp"]) / "changed.json"
    changed.write_text(json.dumps([[100, 7]]))
    code, out = _run(
        "volume",
        "backup",
        setup["img"],
        "--volume",
        "disk",
        "--point",
        "p2",
        "--parent",
        "disk@p1",
        "--changed",
        str(changed),
        *r,
        *pw,
        "--json",
    )
    assert code == 0, out
    assert json.loads(out)["stats"]["chunks_read"] == 1
    code, out = _run("volume", "list", *r, *pw, "--json")
    assert [row["point_id"] for row in json.loads(out)] == ["p1", "p2"]
    target = Path(setup["tmp"]) / "restored"
    code, out = _run("volume", "restore", "disk", str(target), *r, *pw, "--json")
    assert code == 0, out
    assert target.read_bytes() == Path(setup["img"]).read_bytes()
    code, out = _run(
        "volume", "restore", "disk@p1", str(target), "--into-existing", *r, *pw, "--json"
    )
    assert code == 0 and json.loads(out)["stats"]["chunks_written"] == 1
    code, out = _run("repo", "check", "--read-data", *r, *pw, "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out = _run("repo", "stats", *r, *pw, "--json")
    assert json.loads(out)["manifests"] == 2
    code, out = _run("repo", "prune", "--keep-last", "1", *r, *pw, "--json")
    assert code == 0 and len(json.loads(out)["forgotten"]) == 1
    # human output works too
    code, out = _run("repo", "stats", *r, *pw)
    assert code == 0 and "volume disk" in out


def test_cli_wrong_password_exit_7(setup: dict[str, str]) -> None:
    r = ["--repo", setup["repo"]]
    assert _run("repo", "init", *r, env={"HAVEN_REPO_PASSWORD": "right"})[0] == 0
    code, out = _run("repo", "stats", *r, "--json", env={"HAVEN_REPO_PASSWORD": "wrong"})
    assert code == 7
    err = json.loads(out)["error"]
    assert err["type"] == "WrongKey" and "passphrase" in err["message"]


def test_cli_check_corrupt_exit_6_names_point(setup: dict[str, str]) -> None:
    r, pw = ["--repo", setup["repo"]], ["--password-file", setup["pw"]]
    _run("repo", "init", *r, *pw, "--chunk-size", "64KiB")
    _run("volume", "backup", setup["img"], "--volume", "disk", "--point", "p1", *r, *pw)
    packs = [p for p in Path(setup["repo"], "data").rglob("*") if p.is_file()]
    blob = bytearray(packs[0].read_bytes())
    blob[100] ^= 1
    packs[0].write_bytes(bytes(blob))
    code, out = _run("repo", "check", "--read-data", *r, *pw, "--json")
    assert code == 6
    doc = json.loads(out)
    assert doc["ok"] is False and "disk@p1" in doc["affected_points"][0]
    code, _ = _run("repo", "check", "--read-data", *r, *pw)
    assert code == 6


def test_cli_key_file(setup: dict[str, str]) -> None:
    key = Path(setup["tmp"]) / "repo.key"
    r = ["--repo", setup["repo"], "--key-file", str(key)]
    assert _run("repo", "init", *r)[0] == 0
    assert key.exists() and oct(key.stat().st_mode)[-3:] == "600"
    code, out = _run("volume", "backup", setup["img"], "--volume", "v", *r, "--json")
    assert code == 0, out
    assert _run("repo", "check", *r)[0] == 0


def test_cli_errors(setup: dict[str, str]) -> None:
    r, pw = ["--repo", setup["repo"]], ["--password-file", setup["pw"]]
    assert _run("repo", "stats", *r, *pw)[0] == 3  # no repository
    _run("repo", "init", *r, *pw)
    assert _run("repo", "init", *r, *pw)[0] == 4  # exists
    assert _run("volume", "backup", "/nonexistent", "--volume", "v", *r, *pw)[0] == 3
    assert _run("volume", "restore", "nosuchvolume", "/tmp/x", *r, *pw)[0] == 3
    assert _run("repo", "init", "--repo", setup["tmp"] + "/r2", "--chunk-size", "3MiB", *pw)[0] == 2


def test_cli_unlock(setup: dict[str, str]) -> None:
    from haven.datamover import LockKind, Repository
    from haven.datamover.backends import LocalBackend

    r, pw = ["--repo", setup["repo"]], ["--password-file", setup["pw"]]
    _run("repo", "init", *r, *pw)
    repo = Repository.open(LocalBackend(setup["repo"]), password="s3cret-passphrase")
    lock = repo.lock(LockKind.SHARED)
    code, out = _run("repo", "unlock", *r, *pw, "--json")
    assert code == 0 and json.loads(out)["removed"] == []  # live lock kept
    code, out = _run("repo", "unlock", "--all", *r, *pw, "--json")
    assert len(json.loads(out)["removed"]) == 1
    lock.release()


def test_cli_repository_paths_that_cannot_be_directories(setup: dict[str, str]) -> None:
    """Found by the CLI fuzzer: a name too long for the filesystem, or a path through a
    file, is bad input naming the repository (exit 2), not a traceback."""
    pw = ["--password-file", setup["pw"]]
    for repo in ("a" * 300, setup["pw"] + "/repo"):
        code, out = _run("volume", "list", "--repo", repo, *pw, "--json")
        assert code == 2, out
        assert json.loads(out)["error"]["message"].startswith("repository:")


def test_cli_init_with_a_key_file_that_cannot_be_made(setup: dict[str, str]) -> None:
    """Found by the CLI fuzzer: a key file in a directory that does not exist is bad
    input naming --key-file, and no repository is made."""
    repo = setup["tmp"] + "/r-key"
    code, out = _run("repo", "init", "--repo", repo, "--key-file", setup["tmp"] + "/no/dir/k",
                     "--json")  # fmt: skip
    assert code == 2 and json.loads(out)["error"]["problems"][0]["path"] == "--key-file"
    assert not os.path.exists(repo)
