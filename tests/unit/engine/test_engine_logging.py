"""Every line a failing operation logs goes through Haven's formatter and redaction,
the workflow library's (DBOS) included. A real ``haven`` process, stderr read whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.unit.engine.conftest import LabFactory


def test_a_failing_operation_logs_only_redacted_json_lines(
    lab_with: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_REPO_PASS", "the right passphrase")
    lab_with(password_env="SHOP_REPO_PASS")
    first = subprocess.run(
        [sys.executable, "-m", "haven.cli", "protect", "shop", "--json"],
        env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    # A wrong passphrase that is also the error's class name: read (and so registered as
    # a secret) when the repository is opened, it would show in the workflow library's
    # log line of the failure unless that line went through Haven's redaction.
    env = {**os.environ, "SHOP_REPO_PASS": "WrongKey", "HAVEN_LOG_FORMAT": "json"}
    proc = subprocess.run(
        [sys.executable, "-m", "haven.cli", "protect", "shop", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 7, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(r["logger"] == "dbos" and r["level"] == "error" for r in records), lines
    assert "WrongKey" not in proc.stderr and "***" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["exit_code"] == 7
