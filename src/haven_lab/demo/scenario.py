"""The demo: protect twice, drill and clean up, lose site A, fail over, fail back.

Runs in its own HAVEN_HOME (``<home>/demo``), recreated on each run, against the KVM lab
(started if needed). Every phase is a real Haven operation; the report collects the
figures from their results: RPO and RTO of the failover, freeze window, bytes moved,
checks passed, failback time against a full copy of the volumes.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haven.datamover import encode_key_file, new_master_key
from haven.domain.errors import ExternalError
from haven.domain.operations import Operation, OperationKind, OperationState
from haven.engine import connect, resolve, service, services
from haven_lab import kvm
from haven_lab.demo.spec import BUBBLE, SERVERS, write_spec

Say = Callable[[str], None]


class DemoFailed(ExternalError):
    pass


@dataclass
class DemoReport:
    phases: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    ok: bool = False


def _op(report: DemoReport, say: Say, title: str, kind: OperationKind, group: str,
        wf: Callable[..., Any], *args: Any) -> dict[str, str]:  # fmt: skip
    t0 = time.monotonic()
    op: Operation = service.run(kind, group, wf, *args)
    took = time.monotonic() - t0
    report.phases.append({"phase": title, "operation": op.id, "state": op.state.value,
                          "seconds": round(took, 1), "result": dict(op.result)})  # fmt: skip
    say(f"{title}: {op.state.value} in {took:.1f}s ({op.id})")
    if op.state is not OperationState.SUCCEEDED:
        raise DemoFailed(f"{title} failed: {op.error}")
    return dict(op.result)


def _write(site: str, server: str, line: str, sync: bool = True) -> None:
    drv = resolve.driver(site)
    cmd = f"echo {line} >> /data/records" + ("; sync" if sync else "")
    res = drv.guest_exec(drv.get_server(server).id, ["sh", "-c", cmd], timeout_s=30)
    if res.exit_code:
        raise DemoFailed(f"write on {server}@{site} failed")


BLOB_MIB = 24


def _fill(site: str, server: str) -> None:
    """Real data on the disks, so that copies and deltas have something to move."""
    drv = resolve.driver(site)
    cmd = f"dd if=/dev/urandom of=/data/blob bs=1M count={BLOB_MIB} 2>/dev/null; sync"
    res = drv.guest_exec(drv.get_server(server).id, ["sh", "-c", cmd], timeout_s=300)
    if res.exit_code:
        raise DemoFailed(f"filling {server}@{site} failed")


def _read(site: str, server: str) -> str:
    drv = resolve.driver(site)
    res = drv.guest_exec(drv.get_server(server).id, ["cat", "/data/records"], timeout_s=30)
    return res.stdout.decode(errors="replace")


def prepare(home: Path, say: Say) -> kvm.LabEnv:
    say("starting the KVM lab (lab/kvm/up.sh) if needed")
    env = kvm.ensure_lab()
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / "repo.key").write_text(encode_key_file(new_master_key()))
    os.environ["HAVEN_HOME"] = str(home)
    os.environ.pop("HAVEN_CATALOG_URL", None)
    os.environ.pop("HAVEN_ENGINE_URL", None)
    from haven.catalog.store import Catalog
    from haven.engine.apply import apply_spec
    from haven.specs import load_spec

    cat = Catalog.open()
    apply_spec(cat, load_spec(write_spec(home, env)))
    services.use_catalog(cat)
    _remove_all()
    kvm.ensure_isolated_network(env.b, BUBBLE)
    say("booting demo-db, demo-app, demo-web at site A")
    specs = [kvm.guest_spec(env, name) for name in SERVERS]
    boot = kvm.boot_guests(resolve.driver("site-a"), env, specs)
    say("guests up: " + ", ".join(f"{g.name} {g.boot_s or 0:.1f}s" for g in boot))
    return env


def run(home: Path, say: Say, keep: bool = False) -> DemoReport:
    from haven.engine.workflows.cleanup import cleanup_workflow
    from haven.engine.workflows.failback import failback_workflow
    from haven.engine.workflows.failover import failover_workflow
    from haven.engine.workflows.protect import protect_workflow
    from haven.engine.workflows.test_failover import drill_workflow

    report = DemoReport()
    prepare(home, say)
    P = OperationKind
    say(f"filling each data disk with {BLOB_MIB} MiB of incompressible data")
    for s in SERVERS:
        _fill("site-a", s)
        _write("site-a", s, f"order-1-{s}")
    p1 = _op(report, say, "protect #1 (full)", P.PROTECT, "shop", protect_workflow, "shop")
    for s in SERVERS:
        _write("site-a", s, f"order-2-{s}")
    p2 = _op(report, say, "protect #2 (incremental)", P.PROTECT, "shop", protect_workflow,
             "shop")  # fmt: skip
    drill = _op(report, say, "drill (test failover)", P.TEST_FAILOVER, "shop", drill_workflow,
                "shop")  # fmt: skip
    drill_id = report.phases[-1]["operation"]
    clean = _op(report, say, "cleanup of the drill", P.CLEANUP, "shop", cleanup_workflow,
                drill_id)  # fmt: skip
    _write("site-a", "demo-db", "order-3-lost-in-the-disaster")
    say("disaster: site A destroyed (lab/kvm/kill-site.sh a)")
    kvm.run_script("kill-site.sh", "a")
    connect.reset_site("site-a")
    fo = _op(report, say, "failover to site B (unplanned)", P.FAILOVER, "shop",
             failover_workflow, "shop", False, None)  # fmt: skip
    at_b = _read("site-b", "demo-db")
    if "order-2-demo-db" not in at_b or "order-3" in at_b:
        raise DemoFailed(f"site B holds unexpected data: {at_b!r}")
    say("verified at site B: demo-db has order-2 (the point), not the lost order-3")
    _write("site-b", "demo-db", "order-4-at-site-b")
    say("site A rebuilt (lab/kvm/up.sh): its servers are back, shut off")
    kvm.run_script("up.sh")
    connect.reset_site("site-a")
    t0 = time.monotonic()
    fb = _op(report, say, "failback to site A", P.FAILBACK, "shop", failback_workflow, "shop")
    failback_s = time.monotonic() - t0
    at_a = _read("site-a", "demo-db")
    if "order-4-at-site-b" not in at_a:
        raise DemoFailed(f"site A lacks the writes made at site B: {at_a!r}")
    say("verified at site A: demo-db has order-4, written at site B after the failover")
    checks = sum(int(r.get("checks_passed", 0)) for r in (drill, fo, fb))
    failed = sum(int(r.get("checks_failed", 0)) for r in (drill, fo, fb))
    report.figures = {
        "rpo_s": float(fo["rpo_s"]),
        "rto_s": float(fo["rto_s"]),
        "freeze_window_ms": float(p2["freeze_window_ms"]),
        "consistency": p2["consistency"],
        "bytes_sent_full": int(p1["bytes_sent"]),
        "bytes_sent_incremental": int(p2["bytes_sent"]),
        "bytes_read_incremental": int(p2["bytes_read"]),
        "bytes_total": int(p1["bytes_total"]),
        "failover_bytes_written": int(fo["bytes_written"]),
        "failback_s": round(failback_s, 1),
        "failback_bytes_sent": int(fb["reverse_bytes_sent"]) + int(fb["final_bytes_sent"]),
        # every byte the failback exchanged with the repository (replica updates of the
        # home disks included), and the part of it between sites (engine/traffic.py)
        "failback_repository_bytes": int(fb["repository_bytes"]),
        "failback_bytes_between_sites": int(fb["bytes_between_sites"]),
        "failback_bytes_written": int(fb["bytes_written"]),
        "drill_resources_removed": int(clean["removed"]),
        "checks_passed": checks + 2,  # + the two data verifications above
        "checks_failed": failed,
    }
    report.ok = failed == 0
    report.figures["full_copy_s"] = full_copy_seconds(fb["point"])
    say(f"a full copy of the same volumes to site A takes {report.figures['full_copy_s']}s")
    if not keep:
        _remove_all()
        say("demo guests removed (use --keep to leave them running)")
    return report


def _remove_all() -> None:
    for site in ("site-a", "site-b"):
        drv = resolve.driver(site)
        for prefix in ("demo-", "shop-demo-"):
            kvm.remove_prefixed(drv, prefix)


def full_copy_seconds(point_id: str) -> float:
    """Time to restore the point's volumes into new, empty volumes at site A: what a
    failback without the delta would cost. The copies are deleted afterwards."""
    from haven.datamover import restore_volume

    drv = resolve.driver("site-a")
    repo = resolve.repository("offsite")
    point = resolve.point("shop", point_id)
    t0 = time.monotonic()
    made = []
    try:
        for i, v in enumerate(point.volumes):
            vol = drv.create_volume(f"demo-fullcopy-{i}", v.size)
            made.append(vol)
            with drv.open_volume_writer(vol) as dst:
                restore_volume(repo, v.manifest, dst, into_existing=False)
        return round(time.monotonic() - t0, 1)
    finally:
        for vol in made:
            drv.delete_volume(vol)
