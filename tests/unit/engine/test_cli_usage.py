"""``haven usage`` and ``haven quota`` in-process on the fake lab: --json shapes (units in
field names), tables, and bad input exiting 2 naming the option."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from haven.cli.main import app
from tests.support.tenants import two_projects
from tests.unit.engine.lab import DISK, Lab

runner = CliRunner()

PROJECT_FIELDS = {
    "project", "groups", "protected_gb_hours", "stored_bytes", "bytes_between_sites",
    "repository_bytes", "points_taken", "drills_run", "drills_failed", "failovers_run",
    "failovers_failed", "failbacks_run", "failbacks_failed",
}  # fmt: skip


def _json(*args: str, code: int = 0) -> Any:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == code, res.output
    return json.loads(res.stdout)


def test_usage_json_and_table(lab: Lab) -> None:
    two_projects(lab)
    assert _json("protect", "shop")["state"] == "succeeded"
    today = datetime.now(UTC).date()
    since, until = str(today - timedelta(days=1)), str(today + timedelta(days=2))
    doc = _json("usage", "--start", since, "--end", until)
    assert set(doc) == {"start", "end", "stored_at", "projects", "repositories"}
    assert doc["start"] == f"{since}T00:00:00+00:00"  # no zone given: UTC
    rows = {r["project"]: r for r in doc["projects"]}
    assert set(rows) == {"p1", "p2"}
    assert all(set(r) == PROJECT_FIELDS for r in rows.values())
    assert rows["p1"]["points_taken"] == 1 and rows["p2"]["points_taken"] == 0
    assert rows["p1"]["stored_bytes"] > 0 and rows["p2"]["stored_bytes"] == 0
    assert rows["p1"]["bytes_between_sites"] > 0
    assert set(doc["repositories"][0]) == {"repository", "pack_bytes", "attributed_bytes",
                                           "unattributed_bytes", "missing_chunks", "project",
                                           "unreadable"}  # fmt: skip
    only = _json("usage", "--project", "p2", "--no-stored")
    assert [r["project"] for r in only["projects"]] == ["p2"]
    assert only["projects"][0]["stored_bytes"] is None and only["stored_at"] is None
    table = runner.invoke(app, ["usage"])
    assert table.exit_code == 0 and "p1" in table.stdout and "p2" in table.stdout


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--start", "yesterday"), "--start"),
        (("--end", "2026-02-30"), "--end"),
        (("--start", "2026-11-10", "--end", "2026-11-01"), "--end"),
        (("--start", "2025-01-01", "--end", "2026-03-01"), "--end"),  # over 400 days
        (("--start", "0001-01-01T00:00+23:59", "--end", "0001-01-02"), "--start"),  # < year 1
        (("--project", "a/b"), "--project"),
    ],
)
def test_usage_bad_input_exits_2_naming_the_option(
    lab: Lab, args: tuple[str, ...], option: str
) -> None:
    err = _json("usage", *args, code=2)["error"]
    assert err["message"].startswith(f"{option}: "), err
    res = runner.invoke(app, ["usage", *args])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_quota_set_show_list_and_a_refused_protect(lab: Lab) -> None:
    two_projects(lab)
    shown = _json("quota", "set", "p1", "--protected-bytes", "5MiB", "--points", "3")
    assert shown == {
        "project": "p1",
        "groups": {"limit": None, "in_use": 1},
        "protected_bytes": {"limit": 5 * 1024 * 1024, "in_use": 0},
        "points": {"limit": 3, "in_use": 0},
    }
    assert _json("quota", "show", "p1") == shown
    assert [q["project"] for q in _json("quota", "list")] == ["p1", "p2"]  # p2: a group
    refused = _json("protect", "shop", code=4)["error"]
    assert refused["type"] == "SizeQuotaExceeded"
    assert "protected_bytes" in refused["message"] and str(5 * 1024 * 1024) in refused["message"]
    assert str(3 * DISK) in refused["message"]  # what the protect would make
    shown = _json("quota", "set", "p1", "--protected-bytes", "unlimited")
    assert shown["protected_bytes"]["limit"] is None and shown["points"]["limit"] == 3
    assert _json("protect", "shop")["state"] == "succeeded"
    table = runner.invoke(app, ["quota", "show", "p1"])
    assert table.exit_code == 0 and "1 of 3" in table.stdout


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--points", "-1"), "--points"),
        (("--groups", "1.5"), "--groups"),
        (("--groups", "100001"), "--groups"),
        (("--protected-bytes", "-5GiB"), "--protected-bytes"),
        (("--protected-bytes", "lots"), "--protected-bytes"),
        (("--protected-bytes", "2EiB"), "--protected-bytes"),
        (("--points", "99999999999999999999999"), "--points"),
    ],
)
def test_quota_bad_values_exit_2_naming_the_option(
    lab: Lab, args: tuple[str, ...], option: str
) -> None:
    err = _json("quota", "set", "p1", *args, code=2)["error"]
    assert err["message"].startswith(f"{option}: "), err
    assert _json("quota", "list") == []  # nothing stored


def test_quota_set_needs_a_limit_and_a_project_id(lab: Lab) -> None:
    assert "--groups" in _json("quota", "set", "p1", code=2)["error"]["message"]
    err = _json("quota", "set", "bad project", "--groups", "1", code=2)["error"]
    assert err["message"].startswith("project: ")
