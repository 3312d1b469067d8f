"""Steps shared by the recovery workflows (failover, test failover, failback).

Each is a named, logged DBOS step around haven.engine.recover; ``recover_group`` runs the
common tail: restore every volume, boot the plan's waves, run the checks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from haven.domain.codec import from_data
from haven.domain.inventory import ServerSpec, VolumeInfo
from haven.domain.plans import boot_waves
from haven.domain.points import PointState, VolumePoint
from haven.engine import recover, resolve, services
from haven.engine.model import RecoverContext
from haven.engine.recover import CheckReport, Restored, WaveResult
from haven.engine.steps import engine_step


def specs_of(point_id: str) -> dict[str, ServerSpec]:
    raw = services.catalog().point_servers(point_id)
    return {name: from_data(ServerSpec, data) for name, data in raw.items()}


def choose_point(group: str, point_id: str | None) -> tuple[str, float, tuple[VolumePoint, ...]]:
    """The chosen committed point, or the newest one."""
    if point_id:
        p = resolve.point(group, point_id)
        if p.state is not PointState.COMMITTED:
            from haven.domain.errors import ConflictError

            raise ConflictError(f"point {point_id} is {p.state.value}, not committed")
    else:
        points = resolve.committed_points(group)
        if not points:
            from haven.domain.errors import NotFoundError

            raise NotFoundError(f"group {group} has no committed recovery point")
        p = points[-1]
    return p.id, p.created_at.timestamp(), p.volumes


@engine_step("recover.restore")
def restore_step(op_id: str, ctx: RecoverContext, vol: VolumePoint) -> Restored:
    return recover.restore(ctx, vol)


@engine_step("recover.boot")
def boot_step(
    op_id: str, ctx: RecoverContext, wave: int, restored: dict[str, dict[str, VolumeInfo]]
) -> WaveResult:
    return recover.boot_wave(ctx, boot_waves(ctx.plan)[wave], restored)


@engine_step("recover.checks")
def checks_step(op_id: str, ctx: RecoverContext, servers: dict[str, str]) -> CheckReport:
    return recover.run_checks(ctx, servers)


@dataclass(frozen=True, slots=True)
class Recovered:
    servers: dict[str, str]
    rto_s: float
    rpo_s: float
    bytes_written: int
    checks: CheckReport

    def result(self) -> dict[str, Any]:
        return {
            "rto_s": round(self.rto_s, 3),
            "rpo_s": round(self.rpo_s, 3),
            "bytes_written": self.bytes_written,
            "checks_passed": len(self.checks.passed),
            "checks_failed": len(self.checks.failed),
            "servers": ",".join(f"{k}={v}" for k, v in sorted(self.servers.items())),
        }


def recover_group(ctx: RecoverContext, planned: bool = False) -> Recovered:
    """Workflow code (deterministic): restore, boot in waves, check."""
    restored: dict[str, dict[str, VolumeInfo]] = {}
    written = 0
    for vol in ctx.volumes:
        r = restore_step(ctx.op_id, ctx, vol, label=f"{vol.member}/{vol.volume}")
        restored.setdefault(r.server, {})[r.disk] = r.volume
        written += r.bytes_written
    servers: dict[str, str] = {}
    green_at = ctx.started_at
    for i, wave in enumerate(boot_waves(ctx.plan)):
        names = "+".join(s for st in wave for s in st.servers)
        res = boot_step(ctx.op_id, ctx, i, restored, label=f"wave-{i + 1}:{names}")
        servers.update(res.servers)
        green_at = res.green_at
    report = checks_step(ctx.op_id, ctx, servers)
    rpo = 0.0 if planned else max(0.0, ctx.started_at - ctx.point_created_at)
    return Recovered(servers, green_at - ctx.started_at, rpo, written, report)


def now() -> float:
    return time.time()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
