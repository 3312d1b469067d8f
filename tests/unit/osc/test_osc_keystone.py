"""``openstack dr`` driven as a user drives it: the ``openstack`` command in a
subprocess, password-authenticated against the lab's real Keystone as a lab user, finding
Haven's API through the catalog (service type ``disaster-recovery``, registered by the lab
at http://127.0.0.1:18799 in RegionOne and RegionTwo), where one real ``haven api`` of this
module answers over a fake-site catalog with groups of dr-alpha and dr-beta."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.support.api import TERMINAL, TenantHome, api_process, tenant_home, wait_port_free
from tests.support.identity_lab import IdentityLab, identity_lab
from tests.support.osc import Openstack, write_dist_info

pytestmark = pytest.mark.keystone


@pytest.fixture(scope="module")
def ks() -> IdentityLab:
    return identity_lab()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, ks: IdentityLab) -> Iterator[TenantHome]:
    alpha, beta = ks.projects["dr-alpha"], ks.projects["dr-beta"]
    with (
        pytest.MonkeyPatch.context() as mp,
        tenant_home(tmp_path_factory.mktemp("osc"), mp, alpha, beta) as h,
    ):
        yield h


@pytest.fixture(scope="module")
def api(home: TenantHome, ks: IdentityLab) -> Iterator[str]:
    """The API where the catalog says it is (the lab's fixed port)."""
    port = urlsplit(ks.api_url).port or ks.api_port
    wait_port_free(port)
    with api_process(home.home, ks.auth_url, ks.password, port) as base:
        yield base


@pytest.fixture(scope="module")
def osc(api: str, ks: IdentityLab, tmp_path_factory: pytest.TempPathFactory) -> Openstack:
    overlay = write_dist_info(tmp_path_factory.mktemp("osc-dist"))
    return Openstack(ks, overlay, tmp_path_factory.mktemp("osc-home"))


def test_lists_and_shows_the_callers_project_only(osc: Openstack, ks: IdentityLab) -> None:
    alpha, beta = ks.projects["dr-alpha"], ks.projects["dr-beta"]
    groups = osc("alpha-reader", "dr", "group", "list", "-f", "json").json()
    assert [(g["Name"], g["Project"]) for g in groups] == [("shop", alpha)]
    assert (groups[0]["Source"], groups[0]["Target"]) == ("site-a", "site-b")
    assert sorted(groups[0]["Members"]) == ["app", "db", "web"]
    shown = osc("beta-member", "dr", "group", "show", "beta-app", "-f", "json").json()
    assert (shown["name"], shown["project"], shown["source_site"]) == ("beta-app", beta, "site-a")
    assert [m["ref"] for m in shown["members"]] == ["beta-solo"]  # raw JSON, not a table cell
    plans = osc("alpha-member", "dr", "plan", "list", "-f", "value", "-c", "Name")
    assert (plans.code, plans.out.split()) == (0, ["shop"])
    plan = yaml.safe_load(osc("alpha-reader", "dr", "plan", "show", "shop", "-f", "yaml").out)
    assert plan["name"] == "shop" and plan["group"] == "shop" and plan["stages"]


def test_another_projects_group_is_a_clear_error(osc: Openstack) -> None:
    """404 exactly as a group that does not exist: the API's message and request id on
    stderr, the CLI's not-found exit code, no traceback."""
    for name in ("shop", "no-such-group"):
        got = osc("beta-member", "dr", "group", "show", name, "-f", "json")
        assert got.code == 3, got
        assert got.out == ""
        assert name in got.err and "HTTP 404, request req-" in got.err, got.err
        assert "Traceback" not in got.err
    beta_points = osc("beta-member", "dr", "point", "list", "shop")
    assert beta_points.code == 3 and "HTTP 404" in beta_points.err


def test_protect_waits_and_the_point_is_listed(osc: Openstack) -> None:
    done = osc("alpha-member", "dr", "protect", "shop", "--wait", "-f", "json").json()
    assert (done["kind"], done["group"], done["state"]) == ("protect", "shop", "succeeded")
    assert done["steps"] and all(s["state"] for s in done["steps"])
    points = osc("alpha-reader", "dr", "point", "list", "shop", "-f", "value", "-c", "ID")
    assert points.code == 0, points.err
    [point] = points.out.split()
    shown = osc("alpha-reader", "dr", "point", "show", point, "-f", "json").json()
    assert (shown["id"], shown["group"], shown["damaged"]) == (point, "shop", False)
    ops = osc("alpha-reader", "dr", "operation", "list", "--group", "shop", "-f", "json").json()
    assert done["id"] in [o["ID"] for o in ops]
    op = yaml.safe_load(
        osc("alpha-reader", "dr", "operation", "show", done["id"], "-f", "yaml").out
    )
    assert op["id"] == done["id"] and op["state"] == "succeeded"
    assert [s["name"] for s in op["steps"]] == [s["name"] for s in done["steps"]]
    table = osc("alpha-reader", "dr", "operation", "show", done["id"])
    assert table.code == 0 and "1 protect.start done" in table.out  # one line per step
    [status] = osc("alpha-reader", "dr", "status", "-f", "json").json()
    assert (status["Group"], status["Last Point"]) == ("shop", point)
    # without --wait: the operation as accepted, followed by id to its end (the next
    # tests need the group idle)
    queued = osc("alpha-member", "dr", "protect", "shop", "-f", "value", "-c", "id")
    assert queued.code == 0 and queued.out.strip().startswith("op-"), queued
    deadline = time.monotonic() + 60
    while (state := osc("alpha-reader", "dr", "operation", "show", queued.out.strip(),
                        "-f", "value", "-c", "state").out.strip()) not in TERMINAL:  # fmt: skip
        assert time.monotonic() < deadline and state in ("pending", "running"), state
    assert state == "succeeded"


def test_a_reader_failover_is_refused_with_the_apis_message(
    osc: Openstack, ks: IdentityLab, api: str
) -> None:
    direct = httpx.post(
        f"{api}/v1/operations",
        json={"kind": "failover", "plan": "shop"},
        headers={"X-Auth-Token": ks.token("alpha-reader")},
        timeout=30,
    )
    assert direct.status_code == 403
    message = direct.json()["error"]["message"]
    got = osc("alpha-reader", "dr", "failover", "shop", "--planned")
    assert got.code == 7 and got.out == "", got
    assert message in got.err and "HTTP 403, request req-" in got.err


def test_a_drill_runs_and_is_cleaned_up(osc: Openstack) -> None:
    drill = osc("alpha-member", "dr", "drill", "shop", "--wait", "-f", "json").json()
    assert (drill["kind"], drill["state"]) == ("test-failover", "succeeded")
    clean = osc("alpha-member", "dr", "cleanup", "shop", "--wait", "-f", "json").json()
    assert (clean["kind"], clean["state"]) == ("cleanup", "succeeded")


def test_a_failed_operation_exits_non_zero_with_wait(osc: Openstack) -> None:
    """A failback with nothing failed over is accepted, then fails: --wait prints the
    operation and exits with its exit code."""
    got = osc("alpha-manager", "dr", "failback", "shop", "--wait", "-f", "json")
    assert got.code == 4, got  # the operation's exit code: a ConflictError
    op = json.loads(got.out)
    assert (op["kind"], op["state"], op["error_type"]) == ("failback", "failed", "ConflictError")
    assert op["steps"][0]["state"] == "failed"
    assert f"Error: operation {op['id']} failed: ConflictError" in got.err
    assert "Traceback" not in got.err


def test_regions_quota_and_usage(osc: Openstack, ks: IdentityLab) -> None:
    alpha = ks.projects["dr-alpha"]
    two = osc("alpha-reader", "dr", "group", "list", "-f", "value", "-c", "Name",
              region="RegionTwo")  # fmt: skip
    assert (two.code, two.out.split()) == (0, ["shop"])
    nowhere = osc("alpha-reader", "dr", "group", "list", region="RegionNowhere")
    assert nowhere.code == 5, nowhere
    assert "no 'disaster-recovery' endpoint" in nowhere.err and "RegionNowhere" in nowhere.err
    quota = osc("alpha-reader", "dr", "quota", "show", "-f", "json").json()
    assert quota["project"] == alpha and quota["groups_in_use"] == 1
    usage = osc("alpha-reader", "dr", "usage", "--no-stored", "-f", "json").json()
    assert [u["Project"] for u in usage] == [alpha]
    bad = osc("alpha-reader", "dr", "usage", "--start", "yesterday")
    assert bad.code == 2 and "--start" in bad.err
