"""kill -9 of the engine during a failover on real libvirt sites, then resume: the
operation finishes and the recovery site holds each server and volume exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from haven.catalog.store import Catalog
from haven.datamover import encode_key_file, new_master_key
from haven.domain.groups import GroupState
from haven.domain.operations import OperationKind, OperationState
from haven.engine import connect, resolve, runtime, service, services
from haven.engine.apply import apply_spec
from haven.engine.workflows.protect import protect_workflow
from haven.specs import load_spec
from haven_lab import kvm

pytestmark = [pytest.mark.kvm, pytest.mark.slow]
HAVEN = str(Path(sys.executable).parent / "haven")
NAMES = ("it-crash-db", "it-crash-web")

SPEC = """\
apiVersion: haven/v1
sites:
{sites}repositories:
  - {{name: repo, url: "{home}/repo", key_file: "{home}/repo.key"}}
policies:
  - {{name: p, rpo: 5m, interval: 1m}}
groups:
  - {{name: crash, source: site-a, target: site-b, policy: p, repository: repo,
      members: [{{server: it-crash-db}}, {{server: it-crash-web}}]}}
plans:
  - name: crash
    group: crash
    stages:
      - {{servers: [it-crash-db], gates: [{{type: agent, timeout: 180s}}]}}
      - {{servers: [it-crash-web], depends_on: [it-crash-db],
          gates: [{{type: agent, timeout: 180s}}]}}
"""


def _setup(lab_env: kvm.LabEnv, engine_home: Path) -> Catalog:
    engine_home.mkdir(parents=True)
    (engine_home / "repo.key").write_text(encode_key_file(new_master_key()))
    spec = engine_home / "spec.yaml"
    spec.write_text(SPEC.format(sites=lab_env.sites_yaml(), home=engine_home))
    cat = Catalog.open()
    apply_spec(cat, load_spec(spec))
    services.use_catalog(cat)
    a, b = resolve.driver("site-a"), resolve.driver("site-b")
    for drv in (a, b):
        kvm.remove_prefixed(drv, "it-crash-")
        kvm.remove_prefixed(drv, "crash-it-crash-")
    kvm.boot_guests(a, lab_env, [kvm.guest_spec(lab_env, n) for n in NAMES])
    return cat


def _kill_and_resume(args: list[str], step: str, cat: Catalog, kind: OperationKind) -> None:
    runtime.shutdown()
    connect.forget_all()
    env = {**os.environ, "HAVEN_FAULT_KILL_AT": step}
    proc = subprocess.run([HAVEN, *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    pending = [o for o in cat.operations() if o.kind is kind]
    env.pop("HAVEN_FAULT_KILL_AT")
    res = subprocess.run([HAVEN, "operations", "resume", pending[0].id, "--json"],
                         env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["state"] == "succeeded"


def _cleanup() -> None:
    for drv in (resolve.driver("site-a"), resolve.driver("site-b")):
        kvm.remove_prefixed(drv, "it-crash-")
        kvm.remove_prefixed(drv, "crash-it-crash-")


@pytest.mark.parametrize(
    "step", ["protect.snapshot", "protect.backup", "protect.release", "protect.commit"]
)
def test_protect_on_libvirt_survives_kill(
    lab_env: kvm.LabEnv, engine_home: Path, step: str
) -> None:
    """Including the steps during which libvirt backup jobs are open: the resumed process
    re-attaches to the jobs the killed one left (they live in libvirt, not in Haven)."""
    cat = _setup(lab_env, engine_home)
    try:
        _kill_and_resume(["protect", "crash"], step, cat, OperationKind.PROTECT)
        points = [p for p in cat.points("crash") if p.state.value == "committed"]
        assert len(points) == 1 and len(points[0].volumes) == len(NAMES)
        # and the next point still works (increments from it)
        connect.forget_all()
        op = service.run(OperationKind.PROTECT, "crash", protect_workflow, "crash")
        assert op.state is OperationState.SUCCEEDED, op.error
    finally:
        _cleanup()


@pytest.mark.parametrize("step", ["recover.boot:wave-2:it-crash-web"])
def test_failover_on_libvirt_survives_kill(
    lab_env: kvm.LabEnv, engine_home: Path, step: str
) -> None:
    cat = _setup(lab_env, engine_home)
    try:
        op = service.run(OperationKind.PROTECT, "crash", protect_workflow, "crash")
        assert op.state is OperationState.SUCCEEDED, op.error
        _kill_and_resume(["failover", "crash"], step, cat, OperationKind.FAILOVER)
        b = resolve.driver("site-b")
        names = sorted(s.name for s in b.list_servers() if s.name.startswith("it-crash-"))
        assert names == sorted(NAMES)  # each server exactly once
        vols = [v.name for v in b.list_volumes() if v.name.startswith("crash-it-crash-")]
        assert len(vols) == len(NAMES)
        assert cat.group_state("crash") is GroupState.FAILED_OVER
    finally:
        _cleanup()
