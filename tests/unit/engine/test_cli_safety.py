"""Exit codes, time zones and damage through the CLI, as an operator sees them.

In-process (Typer's runner) against the fake lab; stdout and stderr are kept apart, so a
``--json`` run is checked for exactly one document and stderr for tracebacks.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from haven.cli.main import app
from haven.cli.output import console
from haven.engine import connect
from tests.support.repodamage import flip_byte, manifests, pack_key, packs
from tests.unit.engine.conftest import LabFactory
from tests.unit.engine.lab import Lab

runner = CliRunner()


def run(*args: str) -> Result:
    return runner.invoke(app, [*args, "--json"])


def doc(res: Result, code: int = 0) -> Any:
    """The one JSON document of a --json run that exited ``code``."""
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    return json.loads(res.stdout)


def aware(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() is not None


def test_not_found_points_and_groups_exit_3(lab: Lab) -> None:
    doc(run("protect", "shop"))
    for args in (
        ("failover", "shop", "--point", "rp-nope"),
        ("drill", "shop", "--point", "rp-nope"),
    ):
        op = doc(run(*args), 3)
        assert op["state"] == "failed" and op["exit_code"] == 3
        assert op["error_type"] == "NotFoundError" and "rp-nope" in op["error"]
    missing = doc(run("points", "nope"), 3)
    assert missing["error"]["type"] == "NotFoundError" and "shop" in missing["error"]["message"]


def test_actions_the_group_state_forbids_exit_4(lab: Lab) -> None:
    doc(run("protect", "shop"))
    doc(run("failover", "shop"))
    again = doc(run("failover", "shop"), 4)
    assert again["error_type"] == "ConflictError" and "failed-over" in again["error"]
    doc(run("drill", "shop"), 4)  # nothing to drill while failed over
    assert runner.invoke(app, ["failover", "shop"]).exit_code == 4  # human output too


def test_protect_of_a_suspended_group_exits_4(lab: Lab) -> None:
    doc(run("suspend", "shop"))
    refused = doc(run("protect", "shop"), 4)
    assert refused["exit_code"] == 4 and "suspended" in refused["error"]


def test_wrong_repository_passphrase_during_protect_exits_7(
    lab_with: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_REPO_PASS", "the right passphrase")
    lab_with(password_env="SHOP_REPO_PASS")
    doc(run("protect", "shop"))
    connect.forget_all()  # as a new process would: the repository is opened again
    monkeypatch.setenv("SHOP_REPO_PASS", "a wrong passphrase")
    res = run("protect", "shop")
    op = doc(res, 7)
    assert op["error_type"] == "WrongKey" and op["exit_code"] == 7
    assert "a wrong passphrase" not in res.stdout + res.stderr
    assert "the right passphrase" not in res.stdout + res.stderr


def test_drill_from_damaged_data_exits_6_without_a_traceback(lab: Lab) -> None:
    point = doc(run("protect", "shop"))["result"]["point"]
    repo = lab.root / "repo"
    for pack in packs(repo):
        flip_byte(pack)
    res = run("drill", "shop")
    op = doc(res, 6)
    assert op["error_type"] == "PointDamaged" and point in op["error"]
    assert "Traceback" not in res.stderr
    doc(run("cleanup", "shop"))  # the -drill volumes created before the damage showed
    human = runner.invoke(app, ["drill", "shop"])  # a second try: refused at once
    assert human.exit_code == 6 and "Traceback" not in human.stderr + human.stdout
    assert point in human.stdout


def test_json_times_carry_a_time_zone(lab: Lab) -> None:
    op = doc(run("protect", "shop"))
    assert aware(op["created_at"]) and aware(op["finished_at"])
    assert all(aware(s["started_at"]) and aware(s["finished_at"]) for s in op["steps"])
    shown = doc(run("operations", "show", op["id"]))
    assert aware(shown["created_at"]) and all(aware(s["started_at"]) for s in shown["steps"])
    listed = doc(run("operations", "list"))
    assert all(aware(o["created_at"]) and aware(o["finished_at"]) for o in listed)
    (point,) = doc(run("points", "shop"))
    assert aware(point["created_at"])
    assert op["error_type"] is None and op["exit_code"] == 0


def test_points_show_damage_and_repo_check_by_name_updates_the_catalog(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 400)  # table cells unfolded: ids read whole
    first = doc(run("protect", "shop"))["result"]["point"]
    lab.site("site-a").write_disk("db", "vda", 0, b"db second version")
    second = doc(run("protect", "shop"))["result"]["point"]
    repo = lab.root / "repo"
    bad = packs(repo)[-1]  # holds only the second point's new db chunk
    flip_byte(bad)

    structure = doc(run("repo", "check", "offsite"))  # a flipped byte needs --read-data
    assert structure["ok"] and structure["points_damaged"] == []
    found = doc(run("repo", "check", "offsite", "--read-data"), 6)
    assert found["repository"] == "offsite" and not found["ok"]
    (change,) = found["points_damaged"]
    assert change["point"] == second and change["objects"] == [pack_key(repo, bad)]
    states = {p["id"]: p for p in doc(run("points", "shop"))}
    assert states[first]["state"] == "committed" and states[first]["damage"] is None
    assert states[second]["state"] == "damaged"
    assert states[second]["damage"]["objects"] == [pack_key(repo, bad)]
    assert states[second]["damage"]["found_by"] == "repo check"
    table = runner.invoke(app, ["points", "shop"])
    assert (
        table.exit_code == 0 and "damaged" in table.stdout and pack_key(repo, bad) in table.stdout
    )

    human = runner.invoke(app, ["repo", "check", "offsite", "--read-data"])
    assert human.exit_code == 6 and second in human.stdout

    flip_byte(bad)  # the byte back: a read-data check finds the point whole again
    healed = doc(run("repo", "check", "offsite", "--read-data"))
    assert healed["ok"] and [c["point"] for c in healed["points_intact_again"]] == [second]
    assert all(p["state"] == "committed" for p in doc(run("points", "shop")))


def test_repo_check_by_name_reports_a_manifest_the_catalog_has_and_the_repo_lost(
    lab: Lab,
) -> None:
    point = doc(run("protect", "shop"))["result"]["point"]
    victim = manifests(lab.root / "repo")[0]
    victim.unlink()
    res = doc(run("repo", "check", "offsite"), 6)
    assert res["catalog_problems"] and f"manifests/{victim.name}" in res["catalog_problems"][0]
    assert [c["point"] for c in res["points_damaged"]] == [point]
    (listed,) = doc(run("points", "shop"))
    assert listed["state"] == "damaged"
    assert listed["damage"]["objects"] == [f"manifests/{victim.name}"]


def test_repo_check_of_an_unknown_name_exits_3(lab: Lab) -> None:
    res = doc(run("repo", "check", "nope"), 3)
    assert "offsite" in res["error"]["message"]  # the known repositories are named


def test_repo_repair_by_name_rebuilds_an_index_and_the_catalog_follows(lab: Lab) -> None:
    """An index deleted: check finds the points' chunks unindexed (damaged), prune refuses,
    repair rebuilds the index from the pack's trailer and the points are committed again."""
    point = doc(run("protect", "shop"))["result"]["point"]
    repo = lab.root / "repo"
    index = sorted((repo / "index").iterdir())[0]
    index.unlink()
    found = doc(run("repo", "check", "offsite"), 6)
    assert point in [c["point"] for c in found["points_damaged"]]
    fixed = doc(run("repo", "repair", "offsite", "--read-data"))
    assert fixed["counts"] == {"intact": fixed["counts"]["intact"], "partial": 0, "lost": 0}
    assert any(a.startswith(f"rebuilt index/{index.name}") for a in fixed["actions"])
    assert any(point in line and "intact again" in line for line in fixed["catalog_changes"])
    assert index.exists()
    assert all(p["state"] == "committed" for p in doc(run("points", "shop")))
    assert doc(run("repo", "check", "offsite", "--read-data"))["ok"]
