"""The whole DR story on real guests: protect x2, drill + cleanup, site loss, failover,
failback (the ``haven demo`` scenario), with its figures checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.engine import services
from haven_lab import kvm
from haven_lab.demo import scenario

pytestmark = [pytest.mark.kvm, pytest.mark.slow]


def test_protect_drill_failover_failback_on_kvm(lab_env: kvm.LabEnv, engine_home: Path) -> None:
    lines: list[str] = []
    report = scenario.run(engine_home / "demo", lines.append)
    f = report.figures
    assert report.ok, report.phases
    assert f["consistency"] == "application"
    assert 0 < f["freeze_window_ms"] < 5000
    # the incremental read only what changed (CBT), far less than the volumes
    assert f["bytes_read_incremental"] < f["bytes_total"] / 4
    assert f["drill_resources_removed"] == 6  # 3 servers + 3 volumes, nothing else
    assert 0 < f["rto_s"] < 300
    assert f["rpo_s"] >= 0
    assert f["checks_failed"] == 0 and f["checks_passed"] >= 9
    # failback moved the delta, not the volumes
    assert f["failback_bytes_written"] < f["bytes_total"] / 4
    assert any("verified at site A" in line for line in lines)
    # the recovered servers powered themselves off when failback stopped them: none forced
    (fb,) = [p for p in report.phases if p["phase"] == "failback to site A"]
    stop = [s for s in services.catalog().operation(fb["operation"]).steps
            if s.name == "failback.stop-recovered"]  # fmt: skip
    assert len(stop) == 1 and stop[0].detail.startswith("stopped at site-b: demo-")
    assert "forced" not in stop[0].detail
    assert (stop[0].finished_at - stop[0].started_at).total_seconds() < 15
