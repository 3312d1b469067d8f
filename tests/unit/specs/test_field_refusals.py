"""Fields that nothing would act on are refused at validation, each with a message that
names the field and says why (docs/spec-fields.md lists every field and its proof)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.unit.specs.test_bad_input import example, problems

Edit = Callable[[dict[str, Any]], None]


def _edited(edit: Edit) -> list[str]:
    data = example()
    edit(data)
    return problems(data)


def _fake_sites(data: dict[str, Any]) -> None:
    for site in data["sites"]:
        site["driver"] = "fake"
        site.pop("uri")
        site.pop("scratch_dir", None)  # a libvirt field


def _set(path: tuple[str | int, ...], value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("flavors", {"m1.small": "m1.large"}),
        ("keypairs", {"ops": "ops-dr"}),
        ("security_groups", {"web": "web-dr"}),
        ("subnets", {"prod-sub": "dr-sub"}),
        ("ips", [{"server": "db", "network": "prod-net", "ip": "10.0.0.5"}]),
    ],
)
def test_openstack_mappings_are_refused_for_a_libvirt_target(field: str, value: Any) -> None:
    msgs = _edited(_set(("plans", 0, "mappings", field), value))
    assert msgs == [
        f"plans.shop.mappings.{field}: applies to OpenStack sites; site 'site-b' is libvirt, "
        "which recreates a server from its captured definition (CPU, memory, disks, NICs): "
        "only 'networks' and 'name_suffix' apply there"
    ]


def test_openstack_mappings_are_accepted_for_a_fake_target() -> None:
    """The fake site implements the project roles (engine unit tests recover projects)."""

    def edit(data: dict[str, Any]) -> None:
        _fake_sites(data)
        data["plans"][0]["mappings"]["flavors"] = {"a": "b"}

    assert _edited(edit) == []


def test_openstack_mappings_are_accepted_for_an_openstack_target() -> None:
    def edit(data: dict[str, Any]) -> None:
        for site in data["sites"]:
            site.update(driver="openstack", cloud="c", region=site["name"])
            site.pop("scratch_dir", None)
            site.pop("uri")
        data["plans"][0]["mappings"].update(flavors={"a": "b"}, keypairs={"k": "k2"})

    assert _edited(edit) == []


def test_test_bubble_cidr_is_refused_for_a_libvirt_target() -> None:
    msgs = _edited(_set(("plans", 0, "test_bubble", "cidr"), "10.9.0.0/24"))
    assert msgs == [
        "plans.shop.test_bubble.cidr: site 'site-b' is libvirt: the bubble network must exist "
        "there and Haven does not create its subnet; remove 'cidr' (it applies to OpenStack "
        "sites)"
    ]


def test_test_bubble_cidr_is_accepted_where_haven_creates_the_bubble() -> None:
    def edit(data: dict[str, Any]) -> None:
        _fake_sites(data)
        data["plans"][0]["test_bubble"]["cidr"] = "10.9.0.0/24"

    assert _edited(edit) == []


@pytest.mark.parametrize(("field", "value"), [("cloud", "prod"), ("region", "RegionOne")])
def test_openstack_site_fields_are_refused_on_fake_sites(field: str, value: str) -> None:
    def edit(data: dict[str, Any]) -> None:
        _fake_sites(data)
        data["sites"][0][field] = value

    assert _edited(edit) == [f"sites.site-a.{field}: only applies to openstack sites"]


def test_a_fake_site_uri_is_a_file_url() -> None:
    def edit(data: dict[str, Any]) -> None:
        _fake_sites(data)
        data["sites"][0]["uri"] = "qemu:///system"

    (msg,) = _edited(edit)
    assert msg.startswith("sites.site-a.uri: a fake site's uri is file:///DIR")


def test_an_openstack_site_needs_its_region() -> None:
    def edit(data: dict[str, Any]) -> None:
        for site in data["sites"]:
            site.update(driver="openstack", cloud="c")
            site.pop("scratch_dir", None)
            site.pop("uri")

    assert "sites.site-a.region: an openstack site needs 'region' (e.g. RegionOne)" in _edited(edit)


def test_a_repository_at_the_site_it_protects_is_refused() -> None:
    (msg,) = _edited(_set(("repositories", 0, "site"), "site-a"))
    assert msg.startswith("groups.shop.repository: repository 'offsite' is at site 'site-a', ")
    assert "the site this group protects" in msg


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("warm_standby", True, "warm-standby replicas are written from Haven's repository"),
        ("bandwidth_limit", "10MiB/s", "Cinder's backup service moves the data"),
    ],
)
def test_repository_path_fields_are_refused_with_cinder_backup(
    field: str, value: Any, says: str
) -> None:
    def edit(data: dict[str, Any]) -> None:
        for site in data["sites"]:
            site.update(driver="openstack", cloud="c", region=site["name"])
            site.pop("scratch_dir", None)
            site.pop("uri")
        policy = data["policies"][0]
        policy.update(data_path="cinder-backup", warm_standby=False)
        policy.pop("bandwidth_limit")
        policy[field] = value

    (msg,) = _edited(edit)
    assert msg.startswith(f"policies.gold.{field}: {says}")


def test_a_plan_may_not_recover_onto_the_site_it_protects() -> None:
    (msg,) = _edited(_set(("plans", 0, "target"), "site-a"))
    assert msg == (
        "plans.shop.target: site 'site-a' is where group 'shop' runs; recover at another site"
    )


def test_a_gate_naming_a_server_of_another_stage_is_refused() -> None:
    msgs = _edited(_set(("plans", 0, "stages", 0, "gates"), [{"type": "agent", "server": "web"}]))
    assert msgs == [
        "plans.shop.stages[0].gates[0].server: server 'web' is not in this stage; a gate "
        "holds back the next stages until its stage's servers are up (this stage: db)"
    ]


def test_application_requirement_against_a_crash_only_policy_is_refused() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["policies"][0]["consistency"] = "crash"
        data["plans"][0]["consistency"] = "application"

    (msg,) = _edited(edit)
    assert msg.startswith("plans.shop.consistency: requires application-consistent points, ")
    assert "consistency: crash" in msg


def test_volume_member_fields() -> None:
    def on_server(data: dict[str, Any]) -> None:
        data["groups"][0]["members"][0]["attached_to"] = "app"

    (msg,) = _edited(on_server)
    assert msg.startswith("groups.shop.members[0]: 'attached_to' names the server a volume")

    def guest_hook(data: dict[str, Any]) -> None:
        data["groups"][0]["members"].append(
            {"volume": "v", "quiesce": "hook", "hooks": {"pre_freeze": [{"command": "sync"}]}}
        )

    (msg,) = _edited(guest_hook)
    assert msg.startswith("groups.shop.members[3].hooks.pre_freeze[0].where: a volume member ")

    def host_in_no_stage(data: dict[str, Any]) -> None:
        data["groups"][0]["members"].append({"volume": "v", "attached_to": "apphost"})

    assert _edited(host_in_no_stage) == [
        "plans.shop.stages: host of a volume member 'apphost' of group 'shop' is in no "
        "stage; add it so it is recovered"
    ]

    def on_openstack(data: dict[str, Any]) -> None:
        for site in data["sites"]:
            site.update(driver="openstack", cloud="c", region=site["name"])
            site.pop("scratch_dir", None)
            site.pop("uri")
        data["groups"][0]["members"].append({"volume": "v"})

    (msg,) = _edited(on_openstack)
    assert msg.startswith("groups.shop.members[3].volume: site 'site-a' is openstack")


def test_a_server_member_of_another_group_cannot_host_a_volume_member() -> None:
    def edit(data: dict[str, Any]) -> None:
        other = {**data["groups"][0], "name": "side", "members": [
            {"volume": "v", "attached_to": "db"}]}  # fmt: skip
        data["groups"].append(other)

    (msg,) = _edited(edit)
    assert msg.startswith("groups.side.members[0].attached_to: server 'db' is a member of group ")
    assert "one owner" in msg


def test_a_hook_quiesced_member_may_not_continue_past_a_failed_hook_under_application() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["policies"][0]["consistency"] = "application"
        member = data["groups"][0]["members"][0]
        member["quiesce"] = "hook"
        member["hooks"]["pre_freeze"][0]["on_error"] = "continue"

    (msg,) = _edited(edit)
    assert msg.startswith("groups.shop.members[0].hooks.pre_freeze[0].on_error: ")


def test_api_version_other_than_v1_is_refused() -> None:
    (msg,) = _edited(_set(("apiVersion",), "haven/v2"))
    assert msg.startswith("apiVersion: 'haven/v2' is not allowed; use 'haven/v1'")


def test_an_interval_longer_than_the_rpo_is_refused() -> None:
    (msg,) = _edited(_set(("policies", 0, "interval"), "10m"))
    assert msg.startswith("policies.gold.interval: 600s is longer than the rpo (300s)")
