"""The engine's CLI commands in-process: --json shapes, exit codes, no secrets."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from haven.cli.main import app
from tests.unit.engine.lab import Lab

runner = CliRunner()


def _json(*args: str) -> object:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_protect_status_points_suspend_resume(lab: Lab) -> None:
    op = _json("protect", "shop")
    assert isinstance(op, dict) and op["state"] == "succeeded"
    assert op["steps"][0]["name"] == "protect.start"
    status = _json("status")
    assert isinstance(status, list)
    assert status[0]["group"] == "shop" and status[0]["compliance"] == "compliant"
    points = _json("points", "shop")
    assert isinstance(points, list) and points[0]["state"] == "committed"
    assert _json("suspend", "shop") == {"group": "shop", "state": "suspended"}
    assert _json("status")[0]["compliance"] == "suspended"  # type: ignore[index]
    refused = runner.invoke(app, ["protect", "shop", "--json"])
    assert refused.exit_code == 4 and "suspended" in json.loads(refused.stdout)["error"]
    assert _json("resume", "shop") == {"group": "shop", "state": "protected"}
    listed = _json("operations", "list")
    assert isinstance(listed, list) and len(listed) == 2
    shown = _json("operations", "show", op["id"])
    assert isinstance(shown, dict) and shown["result"]["point"] == points[0]["id"]
    assert "key" not in json.dumps(listed).lower()  # nothing about the repository key


def test_unknown_names_exit_3(lab: Lab) -> None:
    assert runner.invoke(app, ["protect", "nope"]).exit_code == 3
    assert runner.invoke(app, ["failover", "nope"]).exit_code == 3
    assert runner.invoke(app, ["operations", "show", "op-nope"]).exit_code == 3


def test_drill_then_cleanup_by_plan_name(lab: Lab) -> None:
    _json("protect", "shop")
    drill = _json("drill", "shop")
    assert isinstance(drill, dict) and drill["result"]["bubble"] == "shop-drill"
    again = runner.invoke(app, ["drill", "shop", "--json"])
    assert again.exit_code == 4  # the first drill is not cleaned up yet (a conflict)
    clean = _json("cleanup", "shop")
    assert isinstance(clean, dict) and clean["result"]["drill"] == drill["id"]
    assert runner.invoke(app, ["cleanup", "shop"]).exit_code == 3  # nothing left
