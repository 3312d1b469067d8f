"""kill -9 at every kind of step of every workflow, then ``operations resume``.

Workflows: protect, drill, cleanup, unplanned and planned failover, failback, and the
project-infrastructure steps of an unplanned failover, a drill and its cleanup on sites
with projects (``make_lab(project=True)``). Steps that repeat per disk or per resource
(``recover.restore:db/vda``, ``...:web/vda``) run the same code: the sweep kills at one or
two of each kind, and ``test_the_sweep_covers_every_kind_of_step`` fails when a workflow
logs a kind of step no list names (a new step must join the sweep).

The CLI runs as a subprocess with HAVEN_FAULT_KILL_AT=<step>: it SIGKILLs itself when that
step starts. Resuming in a new process must finish the operation with the same outcome
as an uninterrupted run, and without duplicate points, volumes or servers. The sites are
file-backed fakes (their state survives the process), the repository a local directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from haven.catalog.store import Catalog
from haven.domain.groups import GroupState
from haven.domain.operations import OperationKind, OperationState
from haven.domain.points import PointState
from haven.engine import connect, runtime, service, services
from haven.engine.apply import apply_spec
from haven.engine.workflows.failover import failover_workflow
from haven.engine.workflows.protect import protect_workflow
from haven.engine.workflows.test_failover import drill_workflow, uncleaned_drills
from haven.specs import load_spec
from tests.unit.engine.lab import SERVERS, Lab, disk_bytes, make_lab

HAVEN = str(Path(sys.executable).parent / "haven")

PROTECT_STEPS = [
    "protect.start", "protect.snapshot", "protect.project", "protect.backup:db/vda",
    "protect.backup:app/vda",
    "protect.backup:web/vda", "protect.release", "protect.commit", "protect.retention", "finish",
]  # fmt: skip
DRILL_STEPS = [
    "drill.start", "drill.bubble", "recover.preflight", "recover.restore:db/vda",
    "recover.restore:web/vda", "recover.boot:wave-1:db", "recover.boot:wave-2:app+web",
    "recover.checks", "recover.verify", "finish",
]  # fmt: skip
CLEANUP_STEPS = [
    "cleanup.start", "cleanup.remove:server/db-drill", "cleanup.remove:volume/shop-web-vda-drill",
    "cleanup.remove:network/shop-drill", "finish",
]  # fmt: skip
UNPLANNED_STEPS = [
    "failover.start", "failover.prepare", "recover.preflight", "recover.restore:app/vda",
    "recover.boot:wave-1:db", "recover.boot:wave-2:app+web", "recover.checks",
    "recover.verify", "failover.commit", "finish",
]  # fmt: skip
FAILOVER_STEPS = [
    "failover.start", "failover.preflight", "failover.stop-source", "protect.start",
    "protect.snapshot", "protect.project", "recover.preflight",
    "protect.backup:app/vda", "protect.release", "protect.commit", "protect.retention",
    "failover.prepare", "recover.restore:db/vda", "recover.restore:web/vda",
    "recover.boot:wave-1:db", "recover.boot:wave-2:app+web", "recover.checks",
    "recover.verify", "failover.commit", "finish",
]  # fmt: skip
FAILBACK_STEPS = [
    "failback.start", "protect.start", "protect.project", "protect.backup:db/vda",
    "recover.preflight", "protect.release",
    "protect.commit", "protect.retention", "failback.switch", "failback.stop-recovered",
    "protect.snapshot", "failback.prepare", "recover.restore:app/vda", "recover.boot:wave-1:db",
    "recover.checks", "recover.verify", "failback.commit", "finish",
]  # fmt: skip


# project recovery (sites with projects): preflight, one step per resource, placed servers,
# floating IPs; a drill creates no network, router or floating IP; cleanup removes by kind
# (the steps every recovery has, restore, boot, checks, commit, are swept above)
PROJECT_FAILOVER_STEPS = [
    "recover.preflight", "recover.infra:volume_type/fast", "recover.infra:network/shop-net",
    "recover.infra:router/shop-router", "recover.infra:security_group/shop-db",
    "recover.infra:role_assignment/alice:member", "recover.floating-ips",
]  # fmt: skip
PROJECT_DRILL_STEPS = ["drill.bubble", "recover.preflight", "recover.infra:keypair/shop-key"]
PROJECT_CLEANUP_STEPS = [
    "cleanup.remove:port/db-drill-0", "cleanup.remove:security_group/shop-web",
    "cleanup.remove:network/shop-drill", "cleanup.remove:role_assignment/alice:member",
]  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Lab, dict[str, str]]]:
    yield from _env(tmp_path, monkeypatch)


@pytest.fixture
def project_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Lab, dict[str, str]]]:
    yield from _env(tmp_path, monkeypatch, project=True)


@pytest.fixture
def warm_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Lab, dict[str, str]]]:
    """The lab with warm-standby replicas (``protect.replica`` steps)."""
    yield from _env(tmp_path, monkeypatch, warm=True)


def _env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: bool = False, warm: bool = False
) -> Iterator[tuple[Lab, dict[str, str]]]:
    lab = make_lab(tmp_path / "lab", project=project, warm=warm)
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HAVEN_CATALOG_URL", raising=False)
    monkeypatch.delenv("HAVEN_ENGINE_URL", raising=False)
    environ = {**os.environ, "COLUMNS": "200"}
    cat = Catalog.open()
    apply_spec(cat, load_spec(lab.spec))
    services.use_catalog(cat)
    try:
        yield lab, environ
    finally:
        runtime.shutdown()
        connect.forget_all()
        services.use_catalog(None)


def setup_ops(*runs: tuple[OperationKind, Callable[..., Any], tuple[Any, ...]]) -> None:
    """Run the preparation in this process (faster than a CLI), then stop the engine so
    that only the CLI under test runs workflows."""
    for kind, wf, args in runs:
        op = service.run(kind, "shop", wf, *args)
        assert op.state is OperationState.SUCCEEDED, op.error
    runtime.shutdown()
    connect.forget_all()


def haven(
    env: dict[str, str], *args: str, kill_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    e = dict(env)
    if kill_at:
        e["HAVEN_FAULT_KILL_AT"] = kill_at
    return subprocess.run([HAVEN, *args], env=e, capture_output=True, text=True, timeout=120)


def ok(env: dict[str, str], *args: str) -> dict[str, object]:
    proc = haven(env, *args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def crash_and_resume(env: dict[str, str], step: str, *args: str) -> dict[str, object]:
    proc = haven(env, *args, "--json", kill_at=step)
    assert proc.returncode == -signal.SIGKILL, f"never reached {step}: {proc.stdout}{proc.stderr}"
    top = [o for o in services.catalog().operations() if "-" not in o.id[3:]]  # not a child
    assert top[0].state in (OperationState.PENDING, OperationState.RUNNING)
    resumed = ok(env, "operations", "resume", top[0].id)
    assert resumed["state"] == "succeeded", resumed
    return resumed


def catalog(env: dict[str, str]) -> Catalog:
    return services.catalog()


@pytest.mark.parametrize("step", PROTECT_STEPS)
def test_protect_survives_kill(env: tuple[Lab, dict[str, str]], step: str) -> None:
    lab, e = env
    result = crash_and_resume(e, step, "protect", "shop")
    assert result["result"]["consistency"] == "application"
    cat = catalog(e)
    points = cat.points("shop")
    committed = [p for p in points if p.state is PointState.COMMITTED]
    assert len(committed) == 1 and len(committed[0].volumes) == len(SERVERS)
    assert cat.group_state("shop") is GroupState.PROTECTED
    assert cat.group_lock_holder("shop") is None
    assert not lab.site("site-a").frozen  # no guest left frozen


@pytest.mark.parametrize("step", FAILOVER_STEPS)
def test_planned_failover_survives_kill(env: tuple[Lab, dict[str, str]], step: str) -> None:
    lab, e = env
    setup_ops((OperationKind.PROTECT, protect_workflow, ("shop",)))
    lab.site("site-a").write_disk("db", "vda", 0, b"last write before failover")
    result = crash_and_resume(e, step, "failover", "shop", "--planned")
    assert result["result"]["rpo_s"] == "0.0"
    b = lab.site("site-b")
    names = [s.name for s in b.list_servers()]
    assert sorted(names) == sorted(SERVERS)  # no duplicates
    assert len(b.list_volumes()) == len(SERVERS)
    assert disk_bytes(b, "db").startswith(b"last write before failover")
    cat = catalog(e)
    assert cat.group_state("shop") is GroupState.FAILED_OVER
    assert len([p for p in cat.points("shop") if p.state is PointState.COMMITTED]) == 2


@pytest.mark.parametrize("step", FAILBACK_STEPS)
def test_failback_survives_kill(env: tuple[Lab, dict[str, str]], step: str) -> None:
    lab, e = env
    setup_ops(
        (OperationKind.PROTECT, protect_workflow, ("shop",)),
        (OperationKind.FAILOVER, failover_workflow, ("shop",)),
    )
    lab.site("site-b").write_disk("db", "vda", 0, b"written at site b")
    crash_and_resume(e, step, "failback", "shop")
    a, b = lab.site("site-a"), lab.site("site-b")
    assert sorted(s.name for s in a.list_servers()) == sorted(SERVERS)
    assert sorted(s.name for s in b.list_servers()) == sorted(SERVERS)
    assert len(b.list_volumes()) == len(SERVERS)
    assert disk_bytes(a, "db").startswith(b"written at site b")
    cat = catalog(e)
    assert cat.group_state("shop") is GroupState.PROTECTED
    placement = cat.placement("shop")
    assert placement is not None and placement.active_site == "site-a"


def _project_at_b(lab: Lab) -> tuple[object, ...]:
    """Site b's project and servers as counts and names (duplicates would show)."""
    b = lab.site("site-b")
    pr = b.project
    return (
        sorted(s.name for s in b.list_servers()), sorted(v.name for v in b.list_volumes()),
        sorted(b.networks), sorted(pr.routers), sorted(pr.security_groups), sorted(pr.keypairs),
        sorted(pr.flavors), sorted(pr.volume_types), sorted(map(str, pr.assignments)),
        sorted(p.name for p in pr.ports.values()),
        sorted(f.address for f in pr.floating_ips.values()),
    )  # fmt: skip


@pytest.mark.parametrize("step", PROJECT_FAILOVER_STEPS)
def test_project_failover_survives_kill(project_env: tuple[Lab, dict[str, str]], step: str) -> None:
    lab, e = project_env
    setup_ops((OperationKind.PROTECT, protect_workflow, ("shop",)))
    result = crash_and_resume(e, step, "failover", "shop")
    assert _project_at_b(lab) == (
        sorted(SERVERS), sorted(f"shop-{s}-vda" for s in SERVERS),
        ["app-net", "public", "shop-net"], ["shop-router"], ["shop-db", "shop-web"],
        ["shop-key"], ["m1.small"], ["fast"], ["alice:member"],
        sorted(f"{s}-0" for s in SERVERS), ["198.51.100.7"],
    )  # fmt: skip
    op_id = str(result["id"])
    ledger = catalog(e).created_resources(op_id)
    assert len({(r.kind, r.ref) for r in ledger}) == len(ledger) == 18
    assert "router/shop-router" in result["result"]["created"]  # type: ignore[index]
    assert catalog(e).group_state("shop") is GroupState.FAILED_OVER


@pytest.mark.parametrize("step", PROJECT_DRILL_STEPS)
def test_project_drill_survives_kill_and_cleanup_undoes_it(
    project_env: tuple[Lab, dict[str, str]], step: str
) -> None:
    lab, e = project_env
    setup_ops((OperationKind.PROTECT, protect_workflow, ("shop",)))
    before = _project_at_b(lab)
    result = crash_and_resume(e, step, "drill", "shop")
    during = _project_at_b(lab)
    assert during[0] == sorted(f"{s}-drill" for s in SERVERS)
    assert during[2] == ["app-net", "public", "shop-drill"] and during[3] == []  # no router
    assert during[9] == sorted(f"{s}-drill-0" for s in SERVERS) and during[10] == []
    ok(e, "cleanup", str(result["id"]))
    assert _project_at_b(lab) == before


@pytest.mark.parametrize("step", PROJECT_CLEANUP_STEPS)
def test_project_cleanup_survives_kill(project_env: tuple[Lab, dict[str, str]], step: str) -> None:
    lab, e = project_env
    before = _project_at_b(lab)
    setup_ops(
        (OperationKind.PROTECT, protect_workflow, ("shop",)),
        (OperationKind.TEST_FAILOVER, drill_workflow, ("shop",)),
    )
    drill = next(o for o in services.catalog().operations("shop")
             if o.kind is OperationKind.TEST_FAILOVER)  # fmt: skip
    crash_and_resume(e, step, "cleanup", drill.id)
    assert _project_at_b(lab) == before
    assert all(r.removed for r in catalog(e).created_resources(drill.id))


# the reverse point's replica update (the first of each name: the final point's follow)
WARM_FAILBACK_STEPS = ["protect.replica:db/vda", "protect.replica:web/vda"]


@pytest.mark.parametrize("step", WARM_FAILBACK_STEPS)
def test_warm_failback_survives_kill_in_a_replica_update(
    warm_env: tuple[Lab, dict[str, str]], step: str
) -> None:
    """After a disaster at site a, the reverse protection's replica updates write into
    the home servers' own disks (engine/replicas.py); killed in one and resumed, the
    failback ends with those disks holding site b's data and no volume beside them."""
    lab, e = warm_env
    setup_ops((OperationKind.PROTECT, protect_workflow, ("shop",)))
    a = lab.site("site-a")
    for s in a.list_servers():
        a.destroy_server(s.id)
    setup_ops((OperationKind.FAILOVER, failover_workflow, ("shop",)))
    lab.site("site-b").write_disk("web", "vda", 0, b"written at site b")
    crash_and_resume(e, step, "failback", "shop")
    a = lab.site("site-a")
    assert sorted(s.name for s in a.list_servers()) == sorted(SERVERS)
    assert len(a.list_volumes()) == len(SERVERS)  # the home disks only
    assert disk_bytes(a, "web").startswith(b"written at site b")
    assert services.catalog().group_state("shop") is GroupState.PROTECTED


def test_serve_adopts_an_operation_whose_cli_was_killed(
    env: tuple[Lab, dict[str, str]],
) -> None:
    _lab, e = env
    proc = haven(e, "protect", "shop", "--json", kill_at="protect.backup:app/vda")
    assert proc.returncode == -signal.SIGKILL
    serve = haven(e, "serve", "--for", "8", "--json")
    assert serve.returncode == 0, serve.stderr
    ops = services.catalog().operations("shop")
    killed = [o for o in ops if o.params.get("pid") and o.id.count("-") == 1]
    assert killed[-1].state is OperationState.SUCCEEDED  # finished by serve
    assert services.catalog().group_state("shop") is GroupState.PROTECTED


@pytest.mark.parametrize("step", DRILL_STEPS)
def test_drill_survives_kill(env: tuple[Lab, dict[str, str]], step: str) -> None:
    lab, e = env
    setup_ops((OperationKind.PROTECT, protect_workflow, ("shop",)))
    crash_and_resume(e, step, "drill", "shop")
    b = lab.site("site-b")
    assert sorted(s.name for s in b.list_servers()) == sorted(f"{n}-drill" for n in SERVERS)
    assert len(b.list_volumes()) == len(SERVERS)  # no duplicates
    assert services.catalog().group_state("shop") is GroupState.PROTECTED  # untouched
    ok(e, "cleanup", "shop")
    assert b.list_servers() == [] and b.list_volumes() == []


@pytest.mark.parametrize("step", CLEANUP_STEPS)
def test_cleanup_survives_kill(env: tuple[Lab, dict[str, str]], step: str) -> None:
    lab, e = env
    setup_ops(
        (OperationKind.PROTECT, protect_workflow, ("shop",)),
        (OperationKind.TEST_FAILOVER, drill_workflow, ("shop",)),
    )
    b = lab.site("site-b")
    networks_before = len(b.list_networks())
    crash_and_resume(e, step, "cleanup", "shop")
    assert b.list_servers() == [] and b.list_volumes() == []
    assert len(b.list_networks()) < networks_before  # the drill's bubble is gone too
    assert uncleaned_drills("shop") == []


@pytest.mark.parametrize("step", UNPLANNED_STEPS)
def test_unplanned_failover_survives_kill(env: tuple[Lab, dict[str, str]], step: str) -> None:
    lab, e = env
    setup_ops((OperationKind.PROTECT, protect_workflow, ("shop",)))
    lab.site("site-a").write_disk("db", "vda", 0, b"written after the point: lost")
    crash_and_resume(e, step, "failover", "shop")
    b = lab.site("site-b")
    assert sorted(s.name for s in b.list_servers()) == sorted(SERVERS)  # no duplicates
    assert len(b.list_volumes()) == len(SERVERS)
    assert disk_bytes(b, "db").startswith(b"db initial data")  # the point, not later writes
    assert services.catalog().group_state("shop") is GroupState.FAILED_OVER


SWEEPS = {
    "protect": PROTECT_STEPS, "drill": DRILL_STEPS, "cleanup": CLEANUP_STEPS,
    "failover": UNPLANNED_STEPS, "planned failover": FAILOVER_STEPS, "failback": FAILBACK_STEPS,
}  # fmt: skip


def _kinds(names: list[str]) -> set[str]:
    return {n.split(":", 1)[0] for n in names}


def test_the_sweep_covers_every_kind_of_step(env: tuple[Lab, dict[str, str]]) -> None:
    """Each workflow run once, uninterrupted: every kind of step it (or a child operation
    it started) logged must be in that workflow's sweep list above."""
    from haven.engine import api

    runs = {
        "protect": lambda: api.protect("shop"),
        "drill": lambda: api.drill("shop"),
        "cleanup": lambda: api.cleanup("shop"),
        "failover": lambda: api.failover("shop"),
        "failback": lambda: api.failback("shop"),
        "planned failover": lambda: api.failover("shop", planned=True),
    }
    missing: dict[str, set[str]] = {}
    for label, run in runs.items():
        before = {o.id for o in services.catalog().operations("shop", 500)}
        op = run()
        assert op.state is OperationState.SUCCEEDED, (label, op.error)
        logged = [
            s.name
            for o in services.catalog().operations("shop", 500)
            if o.id not in before
            for s in services.catalog().operation(o.id).steps
        ]
        if gap := _kinds(logged) - _kinds(SWEEPS[label]):
            missing[label] = gap
    assert not missing, f"steps no kill -9 sweep covers: {missing}"
