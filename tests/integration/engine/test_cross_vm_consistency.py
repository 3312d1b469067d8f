"""Cross-VM consistency, checked on real guests.

A workload writes ordered records across two guests: ``debit i`` on guest A, then the
matching ``credit i`` on guest B. The debit is a page-cache write (no fsync) and the credit
is synced: only a group point that freezes A before B (fsfreeze flushes A's cache) is
guaranteed to hold every debit whose credit it holds. Each point is restored from the
repository and the ledgers are read from the restored ext4 images (journal replayed with
e2fsck, file read with debugfs).

The check must be able to fail: with freezing disabled (crash-consistent points) the same
workload produces a credit without its debit.
"""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

import pytest

from haven.catalog.store import Catalog
from haven.datamover import restore_volume
from haven.domain.operations import OperationKind, OperationState
from haven.domain.points import Consistency
from haven.engine import resolve, service, services
from haven.engine.apply import apply_spec
from haven.engine.workflows.protect import protect_workflow
from haven.sites.base import SiteDriver
from haven.sites.errors import SiteError
from haven.specs import load_spec
from haven_lab import kvm

pytestmark = [pytest.mark.kvm, pytest.mark.slow]

SPEC = """\
apiVersion: haven/v1
sites:
{sites}repositories:
  - {{name: repo, url: "{home}/repo", key_file: "{home}/repo.key"}}
policies:
  - name: p
    rpo: 5m
    interval: 1m
    retention: {{keep_last: 10}}
    consistency: {consistency}
    freeze_timeout: 10s
groups:
  - name: ledger
    source: site-a
    target: site-b
    policy: p
    repository: repo
    members: [{{server: it-debit}}, {{server: it-credit}}]   # freeze order: A first
"""


class Workload:
    """debit i on A (page cache), then credit i on B (synced), until stopped."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.done = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        drv = resolve.driver("site-a")
        a, b = drv.get_server("it-debit").id, drv.get_server("it-credit").id
        i = 0
        while not self.stop.is_set():
            i += 1
            # A credit is written only after its debit is known to be written. An agent
            # refuses commands while its guest is frozen: then the record may or may not
            # land, so its credit is skipped (a debit without a credit is allowed).
            if not self._exec(drv, a, f"echo debit {i} >> /data/ledger"):
                continue
            self._exec(drv, b, f"echo credit {i} >> /data/ledger; sync")
            self.done = i

    def _exec(self, drv: SiteDriver, sid: str, cmd: str) -> bool:
        try:
            return drv.guest_exec(sid, ["sh", "-c", cmd], timeout_s=60).exit_code == 0
        except SiteError:  # agent frozen or busy: the command did not run, or may not have
            while not self.stop.is_set() and not drv.agent_ping(sid, 2.0):
                pass  # each ping waits for the agent's answer (up to 2 s)
            return False


def ledger(image: Path) -> set[int]:
    subprocess.run(["e2fsck", "-fy", str(image)], capture_output=True)  # replays the journal
    out = subprocess.run(["debugfs", "-R", "cat /ledger", str(image)], capture_output=True)
    return {int(m) for m in re.findall(rb"(?:debit|credit) (\d+)", out.stdout)}


def violations(point_id: str, tmp: Path) -> tuple[set[int], set[int]]:
    repo = resolve.repository("repo")
    point = resolve.point("ledger", point_id)
    images = {}
    for v in point.volumes:
        path = tmp / f"{point_id}-{v.member}.raw"
        restore_volume(repo, v.manifest, path)
        images[v.member] = path
    debits, credits = ledger(images["it-debit"]), ledger(images["it-credit"])
    return credits - debits, credits


def _setup(env: kvm.LabEnv, home: Path, consistency: str) -> None:
    from haven.datamover import encode_key_file, new_master_key

    home.mkdir(parents=True, exist_ok=True)
    key = home / "repo.key"
    if not key.exists():
        key.write_text(encode_key_file(new_master_key()))
    spec = home / "spec.yaml"
    spec.write_text(SPEC.format(sites=env.sites_yaml(), home=home, consistency=consistency))
    cat = Catalog.open()
    apply_spec(cat, load_spec(spec))
    services.use_catalog(cat)
    drv = resolve.driver("site-a")
    kvm.remove_prefixed(drv, "it-")
    kvm.boot_guests(drv, env, [kvm.guest_spec(env, n) for n in ("it-debit", "it-credit")])


def _points_under_load(n: int) -> tuple[list[str], Workload]:
    work = Workload()
    work.thread.start()
    ids = []
    try:
        while work.done < 5:  # the workload is running before the first point
            work.stop.wait(0.1)
        for _ in range(n):
            op = service.run(OperationKind.PROTECT, "ledger", protect_workflow, "ledger")
            assert op.state is OperationState.SUCCEEDED, op.error
            ids.append(op.result["point"])
    finally:
        work.stop.set()
        work.thread.join(120)
    return ids, work


def test_application_consistent_points_never_hold_a_credit_without_its_debit(
    lab_env: kvm.LabEnv, engine_home: Path, tmp_path: Path
) -> None:
    _setup(lab_env, engine_home, "application")
    try:
        ids, work = _points_under_load(3)
        seen = 0
        for pid in ids:
            assert resolve.point("ledger", pid).consistency is Consistency.APPLICATION
            bad, credits = violations(pid, tmp_path)
            assert not bad, f"point {pid}: credits without debits {sorted(bad)[:10]}"
            seen = max(seen, len(credits))
        assert seen > 0 and work.done > seen - 1  # the ledgers were really written
    finally:
        kvm.remove_prefixed(resolve.driver("site-a"), "it-")


def test_without_freezing_the_check_finds_a_violation(
    lab_env: kvm.LabEnv, engine_home: Path, tmp_path: Path
) -> None:
    _setup(lab_env, engine_home, "crash")
    try:
        ids, _ = _points_under_load(3)
        found = {}
        for pid in ids:
            assert resolve.point("ledger", pid).consistency is Consistency.CRASH
            bad, _credits = violations(pid, tmp_path)
            if bad:
                found[pid] = sorted(bad)
        assert found, "crash-consistent points showed no violation: the check proves nothing"
    finally:
        kvm.remove_prefixed(resolve.driver("site-a"), "it-")
