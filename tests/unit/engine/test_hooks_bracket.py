"""Member hooks are bracketed, and an operation keeps the membership it started with.

Host hooks (run on the Haven host) write to a log file, so the test sees which ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from haven.domain.operations import OperationState
from haven.engine import api, services
from haven.engine.apply import apply_spec
from haven.specs import load_spec
from tests.unit.engine.lab import Lab

HAVEN = str(Path(sys.executable).parent / "haven")


def _hook(command: str, on_error: str = "fail") -> dict[str, Any]:
    return {"command": ["sh", "-c", command], "timeout": "20s", "on_error": on_error,
            "where": "host"}  # fmt: skip


def _apply(lab: Lab, doc: dict[str, Any], name: str) -> Path:
    path = lab.root / name
    path.write_text(yaml.safe_dump(doc))
    apply_spec(services.catalog(), load_spec(path))
    return path


def _members(doc: dict[str, Any]) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = doc["groups"][0]["members"]
    return members


def test_a_failure_after_pre_freeze_hooks_still_runs_their_post_thaw_hooks(lab: Lab) -> None:
    log = lab.root / "hooks.log"
    doc = yaml.safe_load(lab.spec.read_text())
    db, app, _web = _members(doc)
    db["hooks"] = {"pre_freeze": [_hook(f"echo freeze db >> {log}")],
                   "post_thaw": [_hook(f"echo thaw db >> {log}")]}  # fmt: skip
    app["hooks"] = {"pre_freeze": [_hook(f"echo freeze app >> {log}; exit 3")],
                    "post_thaw": [_hook(f"echo thaw app >> {log}")]}  # fmt: skip
    _apply(lab, doc, "hooks.yaml")
    op = api.protect("shop")
    assert op.state is OperationState.FAILED and "pre-freeze hook" in op.error
    # db's application was quiesced by its hook: it is thawed although the point failed
    assert log.read_text().split("\n")[:-1] == ["freeze db", "freeze app", "thaw app", "thaw db"]


def test_an_operation_keeps_the_membership_it_started_with(lab: Lab) -> None:
    """A protect is killed after its start step; meanwhile `apply` gives web a failing
    pre-freeze hook and takes db's post-thaw hook away. The resumed protect runs with the
    membership it started with; the next protect sees the new one."""
    log = lab.root / "hooks.log"
    doc = yaml.safe_load(lab.spec.read_text())
    _members(doc)[0]["hooks"] = {"post_thaw": [_hook(f"echo thaw db >> {log}")]}
    _apply(lab, doc, "start.yaml")
    _members(doc)[0]["hooks"] = {}
    _members(doc)[2]["hooks"] = {"pre_freeze": [_hook("exit 9")]}
    changed = lab.root / "changed.yaml"
    changed.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "HAVEN_FAULT_KILL_AT": "protect.snapshot"}
    killed = subprocess.run([HAVEN, "protect", "shop", "--json"], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    (op,) = api.operations("shop")
    assert subprocess.run([HAVEN, "apply", "-f", str(changed)], capture_output=True).returncode == 0
    resumed = subprocess.run([HAVEN, "operations", "resume", op.id, "--json"], capture_output=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert log.read_text() == "thaw db\n"
    assert api.protect("shop").state is OperationState.FAILED  # web's new hook fails
