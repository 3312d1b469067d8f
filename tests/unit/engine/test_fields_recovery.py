"""Recovery plan fields, each shown to act through the CLI on the file-backed fake:
target, stages (depends_on, gates and the server a gate names, post_boot, name),
mappings (networks, name_suffix), checks (command and tcp probes). The plan's
``consistency``: test_point_requirement.py; test_bubble: test_cli_engine.py and
test_recovery.py (drills)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from haven.cli.main import app
from haven.domain.groups import GroupState
from haven.engine import services
from haven.sites.fake.filebacked import FileFakeDriver
from tests.unit.engine.lab import SERVERS, Lab, edited_spec

runner = CliRunner()


def _run(*args: str, code: int = 0) -> Any:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == code, res.output
    return json.loads(res.stdout)


def _apply(lab: Lab, edit: Any) -> None:
    _run("apply", "-f", str(edited_spec(lab, edit)))


def test_target_sends_the_recovery_to_another_site_than_the_groups(lab: Lab) -> None:
    FileFakeDriver("site-c", lab.root / "site-c")  # an empty third site

    def edit(data: dict[str, Any]) -> None:
        data["sites"].append({"name": "site-c", "driver": "fake",
                              "uri": f"file://{lab.root}/site-c"})  # fmt: skip
        data["plans"][0]["target"] = "site-c"

    _apply(lab, edit)
    _run("protect", "shop")
    assert _run("failover", "shop")["result"]["target_site"] == "site-c"
    assert {s.name for s in lab.site("site-c").list_servers()} == set(SERVERS)
    assert lab.site("site-b").list_servers() == []


def test_network_mapping_and_name_suffix(lab: Lab) -> None:
    lab.site("site-b").create_network("dr-net")

    def edit(data: dict[str, Any]) -> None:
        data["plans"][0]["mappings"] = {"networks": {"app-net": "dr-net"}, "name_suffix": "-dr"}

    _apply(lab, edit)
    _run("protect", "shop")
    _run("failover", "shop")
    servers = {s.name: s for s in lab.site("site-b").list_servers()}
    assert set(servers) == {f"{s}-dr" for s in SERVERS}
    assert {n.network for s in servers.values() for n in s.spec.nics} == {"dr-net"}


def test_stages_boot_in_dependency_waves_with_names_and_post_boot_hooks(
    lab: Lab, tmp_path: Path
) -> None:
    marker = tmp_path / "db-booted"

    def edit(data: dict[str, Any]) -> None:
        first = data["plans"][0]["stages"][0]
        first["name"] = "database"
        first["post_boot"] = [{"command": ["touch", str(marker)], "where": "host"}]

    _apply(lab, edit)
    _run("protect", "shop")
    op = _run("failover", "shop")
    boots = [s for s in op["steps"] if s["name"].startswith("recover.boot")]
    assert [s["name"] for s in boots] == ["recover.boot:wave-1:db", "recover.boot:wave-2:app+web"]
    assert boots[0]["detail"] == "up and gated: db (stage database)"
    assert marker.exists()


def test_a_gate_naming_a_server_holds_only_that_server(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        stages = data["plans"][0]["stages"]
        stages[1:] = [{"servers": ["app", "web"], "depends_on": ["db"],
                       "gates": [{"type": "command", "command": ["false"], "server": "web",
                                  "timeout": "1s"}]}]  # fmt: skip

    _apply(lab, edit)
    _run("protect", "shop")
    op = _run("failover", "shop", code=5)
    assert "web: gate CommandGate failed" in op["error"] and "app:" not in op["error"]
    assert services.catalog().group_state("shop") is GroupState.PROTECTED  # rolled back


def test_checks_verify_the_recovery_and_a_failed_one_fails_it(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["plans"][0]["checks"] = [
            {"type": "command", "server": "web", "command": ["true"]},
            {"type": "command", "server": "db", "command": ["false"], "timeout": "1s"},
            {"type": "tcp", "server": "app", "port": 9, "timeout": "1s"},
        ]

    _apply(lab, edit)
    _run("protect", "shop")
    op = _run("failover", "shop", code=5)
    assert op["error"].endswith("verification failed: check[1] command on db, check[2] tcp on app")
    checks = next(s for s in op["steps"] if s["name"] == "recover.checks")
    assert checks["detail"].startswith("1 checks passed, 2 failed")
