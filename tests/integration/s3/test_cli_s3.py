"""``haven repo init --repo s3://bucket/prefix`` and friends, as a user runs them: the CLI
in a separate process, the endpoint and keys from ``HAVEN_S3_*``, against the Swift lab's
S3 API (lab/swift/up.sh). Marked ``swift``; without the lab: skip (developer), fail (CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.s3_lab import drop_bucket, s3_env

from haven.datamover.backends.s3 import from_url

pytestmark = [pytest.mark.swift, pytest.mark.slow]
KiB = 1024


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    lab = s3_env()
    name = f"haven-test-cli-{uuid.uuid4().hex[:8]}"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HAVEN_S3_", "AWS_", "HAVEN_REPO"))
    }
    env.update(lab)
    env["HAVEN_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    yield name, env
    backend = from_url(f"s3://{name}", lab)
    try:
        drop_bucket(backend)
    finally:
        backend.close()


def haven(env: dict[str, str], *args: str) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, "-c", "from haven.cli.main import main; main()", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, doc, proc.stdout + proc.stderr


def test_repo_init_backup_restore_check_on_s3(
    bucket: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    name, env = bucket
    pw = tmp_path / "pw"
    pw.write_text("cli-passphrase\n")
    img = tmp_path / "disk.img"
    with img.open("wb") as f:
        f.truncate(2048 * KiB)
        f.write(os.urandom(300 * KiB))
    repo = ["--repo", f"s3://{name}/site-a/repo1", "--password-file", str(pw)]
    secret = env["HAVEN_S3_SECRET_KEY"]

    code, doc, out = haven(env, "repo", "init", *repo, "--chunk-size", "64KiB")
    assert code == 0, out
    assert str(doc["location"]).startswith(f"s3://{name}/site-a/repo1 (endpoint http://")
    assert secret not in out

    code, doc, out = haven(
        env, "volume", "backup", str(img), "--volume", "disk", "--point", "p1", *repo
    )
    assert code == 0, out
    target = tmp_path / "restored.img"
    code, doc, out = haven(env, "volume", "restore", "disk", str(target), *repo)
    assert code == 0, out
    assert target.read_bytes() == img.read_bytes()
    code, doc, out = haven(env, "repo", "check", "--read-data", *repo)
    assert code == 0 and doc["ok"] is True, out

    code, doc, out = haven(env, "repo", "init", *repo)  # one repository per location
    assert code == 4, out

    wrong = {**env, "HAVEN_S3_SECRET_KEY": "wrong-secret-" + uuid.uuid4().hex}
    code, doc, out = haven(wrong, "repo", "check", *repo)
    assert code == 5, out
    error = doc["error"]
    assert isinstance(error, dict) and error["type"] == "S3AuthError"
    assert "SignatureDoesNotMatch" in str(error["message"])
    assert wrong["HAVEN_S3_SECRET_KEY"] not in out and secret not in out
