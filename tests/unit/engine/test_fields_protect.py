"""Spec fields of sites, repositories, policies, groups and members, each shown to act
through the CLI on the file-backed fake (docs/spec-fields.md maps every field to its
test). Plan fields: test_fields_recovery.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from haven.cli.main import app
from haven.domain.inventory import DiskSpec, NicSpec, ServerSpec
from haven.domain.points import PointState
from haven.engine import services
from tests.unit.engine.lab import DISK, SERVERS, Lab, edited_spec

runner = CliRunner()


def _run(*args: str, code: int = 0) -> Any:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == code, res.output
    return json.loads(res.stdout)


def _apply(lab: Lab, edit: Any) -> None:
    _run("apply", "-f", str(edited_spec(lab, edit)))


def _documents(text: str) -> list[Any]:
    """The JSON documents ``haven serve --json`` printed, one per operation."""
    decoder, docs, rest = json.JSONDecoder(), [], text.strip()
    while rest:
        doc, end = decoder.raw_decode(rest)
        docs.append(doc)
        rest = rest[end:].lstrip()
    return docs


def _age_point(point_id: str, created_at: datetime) -> None:
    cat = services.catalog()
    point = next(p for p in cat.points("shop") if p.id == point_id)
    cat.save_point(replace(point, created_at=created_at))


def test_descriptions_and_labels_are_kept_and_shown(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["sites"][0].update(description="production", labels={"team": "shop"})
        data["groups"][0]["description"] = "the web shop"

    _apply(lab, edit)
    site = _run("describe", "site", "site-a")["spec"]
    assert site["description"] == "production" and site["labels"] == {"team": "shop"}
    assert _run("get", "sites")[0]["labels"] == {"team": "shop"}
    assert _run("describe", "group", "shop")["spec"]["description"] == "the web shop"


def test_tier_is_described_as_a_label(lab: Lab) -> None:
    doc = _run("describe", "policy", "gold")
    assert doc["spec"]["tier"] == "silver"
    assert any(n.startswith("tier: a label") for n in doc["notes"])
    text = runner.invoke(app, ["describe", "policy", "gold"])
    assert text.exit_code == 0 and "tier: a label for operators and reports only" in text.stdout


def test_rpo_decides_compliance_and_interval_decides_when_serve_protects(lab: Lab) -> None:
    point = _run("protect", "shop")["result"]["point"]
    assert _run("status")[0]["compliance"] == "compliant"
    quiet = runner.invoke(app, ["serve", "--for", "1.5", "--json"])
    assert quiet.exit_code == 0 and quiet.stdout.strip() == ""  # interval (1m) not reached
    _age_point(point, datetime.now(UTC) - timedelta(minutes=6))  # rpo is 5m
    assert _run("status")[0]["compliance"] == "breach"
    served = runner.invoke(app, ["serve", "--for", "3", "--json"])
    assert served.exit_code == 0, served.output
    (done,) = _documents(served.stdout)  # one point: the next is an interval away
    assert done["state"] == "succeeded" and done["group"] == "shop"
    assert _run("status")[0]["compliance"] == "compliant"


def test_retention_keeps_the_newest_point_of_each_of_the_last_hours(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["policies"][0]["retention"] = {"keep_last": 1, "hourly": 2}

    _apply(lab, edit)
    ids = [_run("protect", "shop")["result"]["point"] for _ in range(4)]
    hour = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    for back, point in zip((5, 4, 3, 2), ids, strict=True):
        _age_point(point, hour - timedelta(hours=back))
    newest = _run("protect", "shop")["result"]["point"]
    committed = {p.id for p in services.catalog().points("shop") if p.state is PointState.COMMITTED}
    assert committed == {newest, ids[3]}  # keep_last 1 + the newest of the 2 newest hours


def test_chunk_size_makes_the_repository_and_a_different_one_later_is_refused(lab: Lab) -> None:
    def small(data: dict[str, Any]) -> None:
        data["repositories"][0]["chunk_size"] = "256KiB"

    _apply(lab, small)
    _run("protect", "shop")
    stats = _run("repo", "stats", "--repo", str(lab.root / "repo"), "--key-file",
                 str(lab.root / "repo.key"))  # fmt: skip
    assert stats["chunk_size"] == 256 * 1024
    _apply(lab, lambda data: None)  # back to the default, 1 MiB: apply cannot know
    res = runner.invoke(app, ["protect", "shop", "--json"])
    assert res.exit_code == 2, res.output
    error = json.loads(res.stdout)["error"]
    assert "repositories.offsite.chunk_size" in error and "262144" in error


def test_member_volumes_select_the_disks_protected_and_recreated(lab: Lab) -> None:
    a = lab.site("site-a")
    disks = (DiskSpec("vda", DISK, format="raw"), DiskSpec("vdb", DISK, format="raw"))
    a.add_server(ServerSpec("two", 1, 128, disks, (NicSpec("app-net"),)))

    def edit(data: dict[str, Any]) -> None:
        data["groups"][0]["members"].append({"server": "two", "volumes": ["vdb"]})
        data["plans"][0]["stages"].append({"servers": ["two"]})

    _apply(lab, edit)
    op = _run("protect", "shop")
    backups = {s["name"] for s in op["steps"] if s["name"].startswith("protect.backup")}
    assert "protect.backup:two/vdb" in backups and "protect.backup:two/vda" not in backups
    _run("failover", "shop")
    assert [d.target for d in lab.site("site-b").get_server("two").spec.disks] == ["vdb"]


def _snapshot_detail(op: dict[str, Any]) -> str:
    return str(next(s["detail"] for s in op["steps"] if s["name"] == "protect.snapshot"))


def test_hooks_run_where_and_as_told(lab: Lab, tmp_path: Path) -> None:
    marker = tmp_path / "pre-freeze-ran"

    def edit(data: dict[str, Any]) -> None:
        members = data["groups"][0]["members"]
        members[0]["hooks"] = {
            "pre_freeze": [{"command": ["touch", str(marker)], "where": "host"}],
            "post_thaw": [{"command": "false", "where": "host", "on_error": "continue"}],
        }
        members[1]["hooks"] = {
            "pre_freeze": [
                {"command": "sleep 5", "where": "host", "timeout": "1s", "on_error": "continue"}
            ],
        }

    _apply(lab, edit)
    op = _run("protect", "shop")
    assert marker.exists()  # where: host runs on the Haven host
    detail = _snapshot_detail(op)
    assert "post-thaw db: exit 1" in detail  # on_error: continue goes on, and says so
    assert "pre-freeze app: timed out after 1s" in detail

    def failing(data: dict[str, Any]) -> None:
        data["groups"][0]["members"][2]["hooks"] = {
            "post_thaw": [{"command": "false", "where": "host"}]  # on_error: fail
        }

    _apply(lab, failing)
    res = runner.invoke(app, ["protect", "shop", "--json"])
    assert res.exit_code == 5 and "post-thaw hook 'false' on web failed" in res.stdout


def test_quiesce_by_hook_makes_application_points_and_none_makes_crash(lab: Lab) -> None:
    def hooked(data: dict[str, Any]) -> None:
        members = data["groups"][0]["members"]
        members[0]["quiesce"] = "hook"  # db keeps its pre_freeze hook ("true", in the guest)
        for m in members[1:]:
            m["quiesce"] = "none"

    _apply(lab, hooked)
    op = _run("protect", "shop")
    assert op["result"]["consistency"] == "application"
    assert "quiesced by the pre-freeze hooks of db" in op["result"]["reason"]
    assert lab.site("site-a").freeze_log == []  # no agent freeze

    def none(data: dict[str, Any]) -> None:
        for m in data["groups"][0]["members"]:
            m["quiesce"] = "none"

    _apply(lab, none)
    op = _run("protect", "shop")
    assert op["result"]["consistency"] == "crash"
    assert op["result"]["reason"] == "no member was quiesced"


def test_policy_consistency_crash_freezes_nothing(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["policies"][0]["consistency"] = "crash"

    _apply(lab, edit)
    op = _run("protect", "shop")
    assert op["result"]["consistency"] == "crash"
    assert lab.site("site-a").freeze_log == []


def test_warm_standby_keeps_replicas_that_failover_starts_from(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["policies"][0]["warm_standby"] = True

    _apply(lab, edit)
    op = _run("protect", "shop")
    replicas = [s for s in op["steps"] if s["name"].startswith("protect.replica")]
    assert [s["name"] for s in replicas] == [
        f"protect.replica:{s}/vda" for s in ("db", "app", "web")
    ]
    assert {v.name for v in lab.site("site-b").list_volumes()} == {f"shop-{s}-vda" for s in SERVERS}
    failover = _run("failover", "shop")
    restores = [s["detail"] for s in failover["steps"] if s["name"].startswith("recover.restore")]
    assert restores and all("into the existing volume" in d for d in restores)


def test_a_passphrase_read_from_a_file_reference(lab: Lab, tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("file passphrase\n")
    secret.chmod(0o600)

    def edit(data: dict[str, Any]) -> None:
        repo = data["repositories"][0]
        repo.pop("key_file")
        repo["password"] = {"file": str(secret)}
        repo["url"] = str(lab.root / "repo-by-passphrase")

    _apply(lab, edit)
    res = runner.invoke(app, ["protect", "shop", "--json"])
    assert res.exit_code == 0, res.output
    assert "file passphrase" not in res.output
    shown = _run("describe", "repository", "offsite")["spec"]["password"]
    assert shown == {"source": "file", "name": str(secret)}  # the reference, never the value
