"""A plan that requires application-consistent points (``consistency: application``),
through the CLI on the fake: failover and drill take the newest point that qualifies and
say which and why; with crash-consistent points only they change nothing (exit 4)."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from haven.cli.main import app
from haven.domain.groups import GroupState
from haven.engine import services
from tests.unit.engine.lab import Lab, edited_spec

runner = CliRunner()


def _run(*args: str, code: int = 0) -> dict[str, Any]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == code, res.output
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def _require_application(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["plans"][0]["consistency"] = "application"

    _run("apply", "-f", str(edited_spec(lab, edit)))


def _crash_point(lab: Lab) -> str:
    """A point taken while app's agent is silent: crash-consistent, with the reason."""
    a = lab.site("site-a")
    a.set_agent(a.get_server("app").id, responsive=False)
    op = _run("protect", "shop")
    a.set_agent(a.get_server("app").id, responsive=True)
    assert op["result"]["consistency"] == "crash", op["result"]
    return str(op["result"]["point"])


def test_only_crash_consistent_points_refuse_failover_and_drill_changing_nothing(
    lab: Lab,
) -> None:
    _require_application(lab)
    crash = _crash_point(lab)
    for command in (["failover", "shop"], ["drill", "shop"]):
        doc = _run(*command, code=4)
        assert doc["state"] == "failed" and doc["exit_code"] == 4
        assert "no application-consistent recovery point" in doc["error"]
        assert crash in doc["error"] and "'consistency: application'" in doc["error"]
    cat = services.catalog()
    assert cat.group_state("shop") is GroupState.PROTECTED
    assert cat.placement("shop") is None and cat.group_lock_holder("shop") is None
    b = lab.site("site-b")
    assert b.list_servers() == [] and b.list_volumes() == []
    assert {n.name for n in b.list_networks()} == {"app-net"}  # no drill bubble either


def test_failover_takes_the_newest_application_point_and_says_why(lab: Lab) -> None:
    _require_application(lab)
    good = str(_run("protect", "shop")["result"]["point"])
    newer_crash = _crash_point(lab)
    drill = _run("drill", "shop")
    assert drill["result"]["point"] == good
    _run("cleanup", "shop")
    named = _run("failover", "shop", "--point", newer_crash, code=4)
    assert f"point {newer_crash}" in named["error"] and "crash-consistent" in named["error"]
    op = _run("failover", "shop")
    result = op["result"]
    assert result["point"] == good
    assert "newest application-consistent point" in result["point_reason"]
    assert newer_crash in result["point_reason"]  # what it passed over, with the reason
    assert "app" in result["point_reason"]


def test_without_a_requirement_the_newest_point_is_taken_whatever_its_consistency(
    lab: Lab,
) -> None:
    _run("protect", "shop")
    crash = _crash_point(lab)
    result = _run("failover", "shop")["result"]
    assert result["point"] == crash
    assert result["point_reason"] == "the newest intact point, crash-consistent"


def test_planned_failover_qualifies_with_its_final_point(lab: Lab) -> None:
    _require_application(lab)
    _crash_point(lab)
    result = _run("failover", "shop", "--planned")["result"]
    assert result["point_reason"] == "the final point, taken with the servers stopped"
    point = next(p for p in services.catalog().points("shop") if p.id == result["point"])
    assert point.consistency.value == "application"
