"""Volume members (``members: [{volume: NAME}]``) through the CLI on the file-backed fake:
protected in the group's points, recovered at the target, and a server recreated around
a recovered volume (seed use case 7). Bad input: a volume with two owners."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from haven.cli.main import app
from haven.domain.groups import GroupState
from haven.domain.resources import ResourceKind
from haven.engine import services
from tests.unit.engine.lab import Lab, add_host, add_volume, edited_spec, volume_bytes

runner = CliRunner()
DATA = b"app volume data written at the source " * 100


def _run(*args: str, code: int = 0) -> dict[str, Any]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == code, res.output
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def _with_volume(lab: Lab, member: dict[str, Any], host_stage: bool = False) -> None:
    """Apply the lab's spec with ``member`` added to group shop (through the CLI)."""

    def edit(data: dict[str, Any]) -> None:
        data["groups"][0]["members"].append(member)
        if host_stage:
            data["plans"][0]["stages"].append(
                {"servers": [member["attached_to"]], "depends_on": ["db"],
                 "gates": [{"type": "agent", "timeout": "10s"}]}
            )  # fmt: skip

    _run("apply", "-f", str(edited_spec(lab, edit)))


def test_a_volume_at_rest_is_in_every_point_and_comes_back_at_failover(lab: Lab) -> None:
    add_volume(lab.site("site-a"), "appdata", DATA)
    _with_volume(lab, {"volume": "appdata"})
    op = _run("protect", "shop")
    backups = [s["name"] for s in op["steps"] if s["name"].startswith("protect.backup")]
    assert "protect.backup:volume:appdata" in backups and len(backups) == 4
    point = services.catalog().points("shop")[-1]
    assert [v.member for v in point.volumes if v.key == "volume:appdata"] == ["appdata"]

    a = lab.site("site-a")
    vol = next(v for v in a.list_volumes() if v.name == "appdata")
    with a.open_volume_writer(vol) as w:
        w.write(0, b"written after the point")  # not in the point: must not come back
    failed_over = _run("failover", "shop")
    assert failed_over["result"]["volumes"] == "appdata=shop-appdata"
    b = lab.site("site-b")
    assert volume_bytes(b, "shop-appdata", len(DATA)) == DATA
    assert "appdata" not in {s.name for s in b.list_servers()}


def test_a_server_is_recreated_around_its_replicated_volume(lab: Lab) -> None:
    """Use case 7: the volume holds the application; the server using it is not protected
    (its boot disk stays behind) but is recreated at the target around the volume."""
    a = lab.site("site-a")
    vol = add_volume(a, "appdata", DATA)
    add_host(a, "apphost", vol)
    a.write_disk("apphost", "vda", 0, b"boot disk, not protected")
    _with_volume(lab, {"volume": "appdata", "attached_to": "apphost"}, host_stage=True)
    op = _run("protect", "shop")
    assert "protect.backup:volume:appdata" in [s["name"] for s in op["steps"]]
    assert op["result"]["bytes_total"] == str(4 * 2 * 1024 * 1024)  # 3 servers + the volume

    failed_over = _run("failover", "shop")
    result = failed_over["result"]
    assert "apphost=" in result["servers"] and result["volumes"] == "appdata=shop-appdata"
    b = lab.site("site-b")
    host = b.get_server("apphost")
    assert [d.target for d in host.spec.disks] == ["vdb"]  # only what the group protects
    assert host.state.value == "running"
    attached = host.spec.disk("vdb").source
    assert attached == next(v.id for v in b.list_volumes() if v.name == "shop-appdata")
    assert volume_bytes(b, "shop-appdata", len(DATA)) == DATA


def test_drill_restores_the_volume_into_its_own_copy_and_cleanup_removes_it(lab: Lab) -> None:
    a = lab.site("site-a")
    add_host(a, "apphost", add_volume(a, "appdata", DATA))
    _with_volume(lab, {"volume": "appdata", "attached_to": "apphost"}, host_stage=True)
    _run("protect", "shop")
    drill = _run("drill", "shop")
    assert drill["result"]["volumes"] == "appdata=shop-appdata-drill"
    b = lab.site("site-b")
    assert volume_bytes(b, "shop-appdata-drill", len(DATA)) == DATA
    assert b.get_server("apphost-drill").spec.nics[0].network == "shop-drill"
    _run("cleanup", "shop")
    assert lab.site("site-b").list_volumes() == [] and lab.site("site-b").list_servers() == []


def test_failback_writes_the_volume_back_into_its_home_volume(lab: Lab) -> None:
    a = lab.site("site-a")
    add_host(a, "apphost", add_volume(a, "appdata", DATA))
    _with_volume(lab, {"volume": "appdata", "attached_to": "apphost"}, host_stage=True)
    _run("protect", "shop")
    _run("failover", "shop", "--planned")
    b = lab.site("site-b")
    vol = next(v for v in b.list_volumes() if v.name == "shop-appdata")
    with b.open_volume_writer(vol) as w:
        w.write(0, b"changed at the recovery site")
    back = _run("failback", "shop")
    assert back["result"]["volumes"] == "appdata=appdata"  # in place, the home volume
    assert volume_bytes(lab.site("site-a"), "appdata", 28) == b"changed at the recovery site"
    assert services.catalog().group_state("shop") is GroupState.PROTECTED


def test_a_volume_declared_attached_to_a_member_is_refused_at_apply(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["groups"][0]["members"].append({"volume": "dbdata", "attached_to": "db"})

    res = runner.invoke(app, ["apply", "-f", str(edited_spec(lab, edit)), "--json"])
    assert res.exit_code == 2, res.output
    (problem,) = json.loads(res.stdout)["error"]["problems"]
    assert problem["path"] == "groups.shop.members[3].attached_to"
    assert "'dbdata'" in problem["message"] and "'db'" in problem["message"]
    assert "one owner" in problem["message"]


def _dbdisk_member(lab: Lab) -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["groups"][0]["members"].append({"volume": "db-vda"})  # db's own disk

    return edited_spec(lab, edit)


def test_a_volume_the_site_shows_attached_to_a_member_is_refused_at_apply(lab: Lab) -> None:
    res = runner.invoke(app, ["apply", "-f", str(_dbdisk_member(lab)), "--json"])
    assert res.exit_code == 2, res.output
    (problem,) = json.loads(res.stdout)["error"]["problems"]
    assert problem["path"] == "groups.shop.members[3].volume"
    assert "volume 'db-vda' is attached to server 'db'" in problem["message"]
    assert "one owner" in problem["message"]
    assert services.catalog().resources().by_name(ResourceKind.GROUP)["shop"].volume_members() == ()


def test_an_attachment_apply_could_not_see_is_refused_at_protect(lab: Lab) -> None:
    """The site was down during apply: protect checks before anything is taken (exit 2)."""
    a = lab.site("site-a")
    a.set_down(True)
    _run("apply", "-f", str(_dbdisk_member(lab)))
    a.set_down(False)
    res = runner.invoke(app, ["protect", "shop", "--json"])
    assert res.exit_code == 2, res.output
    error = json.loads(res.stdout)["error"]
    assert "groups.shop.members[3].volume" in error and "'db-vda'" in error
    assert "server 'db'" in error and "one owner" in error
    assert services.catalog().points("shop") == []
    assert services.catalog().group_lock_holder("shop") is None


def test_a_volume_attached_to_another_server_than_declared_is_refused(lab: Lab) -> None:
    a = lab.site("site-a")
    add_host(a, "other", add_volume(a, "appdata", DATA))
    add_host(a, "apphost", add_volume(a, "spare", b""))
    _with_volume(lab, {"volume": "appdata", "attached_to": "apphost"}, host_stage=True)
    res = runner.invoke(app, ["protect", "shop", "--json"])
    assert res.exit_code == 2, res.output
    error = json.loads(res.stdout)["error"]
    assert "attached_to" in error and "'other'" in error and "'apphost'" in error


def test_a_group_of_volumes_only_is_recovered_by_a_plan_without_stages(lab: Lab) -> None:
    add_volume(lab.site("site-a"), "archive", DATA)

    def edit(data: dict[str, Any]) -> None:
        shop = data["groups"][0]
        data["groups"].append({**shop, "name": "vault", "members": [{"volume": "archive"}]})
        data["plans"].append({"name": "vault", "group": "vault"})

    _run("apply", "-f", str(edited_spec(lab, edit)))
    _run("protect", "vault")
    result = _run("failover", "vault")["result"]
    assert result["volumes"] == "archive=vault-archive" and result["servers"] == ""
    assert volume_bytes(lab.site("site-b"), "vault-archive", len(DATA)) == DATA
