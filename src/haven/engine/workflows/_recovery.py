"""Steps shared by the recovery workflows (failover, test failover, failback).

Each is a named, logged DBOS step around haven.engine.recover and haven.engine.infra;
``recover_group`` runs the common tail: the preflight of the project infrastructure and one
step per resource it lacks (sites with projects), restore every volume, boot the plan's
waves, attach floating IPs, run the checks, read back what the restore did not fetch.

Damaged points: without a point named, recovery uses the newest intact (COMMITTED) point
and records the newer DAMAGED ones it passed over. A restore that finds the point's data
damaged marks it DAMAGED; when the context allows a fallback (drill, unplanned failover
without ``--point``) recovery starts again from the next older intact point
(``recover.next-point``), else it fails with PointDamaged (exit 6). After the checks
(outside the RTO) ``recover.verify`` reads back, from the repository, the data of every
volume restored into an existing disk (a warm-standby replica, a failback's home disk):
those restores fetched only the chunks that differ, so damage to the others would go
unseen; found damage marks the point and is reported in the operation's result. Where the
repository declares a site other than the recovery's (a failback to the home site), a
read-back would move the whole point between sites: there the manifests and packs are
checked for presence and length only (``damage.check_packs``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from haven.domain.codec import from_data
from haven.domain.errors import ConflictError, HavenError, NotFoundError
from haven.domain.groups import MemberKind
from haven.domain.inventory import ServerSpec, VolumeInfo
from haven.domain.plans import PointRequirement, boot_waves
from haven.domain.points import Consistency, PointState, RecoveryPoint, VolumePoint, name_objects
from haven.domain.project import InfraItem, ProjectSnapshot
from haven.engine import damage, infra, recover, resolve, services, traffic
from haven.engine.damage import PointDamaged
from haven.engine.infra import Ensured, FloatingIps, Preflight
from haven.engine.model import RecoverContext, SkippedPoint
from haven.engine.recover import CheckReport, Restored, RestoreDamaged, Verified, WaveResult
from haven.engine.steps import engine_step


def specs_of(point_id: str) -> dict[str, ServerSpec]:
    raw = services.catalog().point_servers(point_id)
    return {name: from_data(ServerSpec, data) for name, data in raw.items()}


def project_of(point_id: str) -> ProjectSnapshot | None:
    return services.catalog().point_project(point_id)


@dataclass(frozen=True, slots=True)
class PointChoice:
    point_id: str
    created_at: float
    volumes: tuple[VolumePoint, ...]
    skipped: tuple[SkippedPoint, ...] = ()  # newer damaged points passed over
    why: str = ""  # why this point: shown in the operation's result (point_reason)


def _short(p: RecoveryPoint) -> str:
    return f"{p.id} ({p.consistency_reason})" if p.consistency_reason else p.id


def choose_point(
    group: str, point_id: str | None, require: PointRequirement = PointRequirement.ANY
) -> PointChoice:
    """The named point (NotFoundError if unknown, PointDamaged if damaged, ConflictError
    if not committed), or the newest intact committed point, passing over damaged ones
    (PointDamaged when only damaged points are left, NotFoundError when there are none).

    ``require`` (the plan's ``consistency``): APPLICATION passes over crash-consistent
    points too; when intact points exist but none qualifies, ConflictError (exit 4), as
    for a named point that does not qualify."""
    app = require is PointRequirement.APPLICATION
    if point_id:
        p = resolve.point(group, point_id)
        if p.state is PointState.DAMAGED:
            raise damage.refuse_named(p)
        if p.state is not PointState.COMMITTED:
            raise ConflictError(f"point {point_id} is {p.state.value}, not committed")
        if app and p.consistency is not Consistency.APPLICATION:
            raise ConflictError(
                f"point {_short(p)} is {p.consistency.value}-consistent and the plan requires "
                "application-consistent points (its 'consistency: application'); name an "
                "application-consistent point, or change the plan"
            )
        why = f"named (--point), {p.consistency.value}-consistent"
        return PointChoice(p.id, p.created_at.timestamp(), p.volumes, why=why)
    skipped: list[SkippedPoint] = []
    crash: list[RecoveryPoint] = []
    for p in reversed(services.catalog().points(group)):  # newest first
        if p.state is PointState.COMMITTED:
            if app and p.consistency is not Consistency.APPLICATION:
                crash.append(p)
                continue
            why = f"the newest intact point, {p.consistency.value}-consistent"
            if app:
                why = "the newest application-consistent point (the plan requires one)"
                if crash:
                    why += f"; passed over newer crash-consistent {', '.join(map(_short, crash))}"
            return PointChoice(p.id, p.created_at.timestamp(), p.volumes, tuple(skipped), why)
        if p.state is PointState.DAMAGED:
            found = p.damage
            skipped.append(SkippedPoint(p.id, found.objects if found else (),
                                        found.reason if found else ""))  # fmt: skip
    if crash:
        damaged = f"; damaged: {'; '.join(s.summary() for s in skipped)}" if skipped else ""
        raise ConflictError(
            f"group {group} has no application-consistent recovery point and the plan "
            "requires one (its 'consistency: application'); the intact points are "
            f"crash-consistent: {', '.join(map(_short, crash[:5]))}{damaged}. Nothing was "
            "changed: take an application-consistent point (haven protect), or change the plan"
        )
    if skipped:
        raise PointDamaged(
            f"group {group} has no intact recovery point: "
            + "; ".join(s.summary() for s in skipped)
        )
    raise NotFoundError(f"group {group} has no committed recovery point")


def at_point(ctx: RecoverContext, choice: PointChoice) -> RecoverContext:
    """``ctx`` moved to another point: its volumes, server definitions and names."""
    specs = specs_of(choice.point_id)
    return replace(
        ctx,
        point_id=choice.point_id,
        point_created_at=choice.created_at,
        volumes=choice.volumes,
        specs=specs,
        names={s: f"{s}{ctx.name_suffix}" for s in specs},
        skipped=choice.skipped,
        point_why=choice.why,
        project=project_of(choice.point_id),
        infra=None,
    )


@engine_step("recover.preflight")
def preflight_step(op_id: str, ctx: RecoverContext) -> Preflight:
    """Everything the recovery site lacks, listed at once before anything is created
    (PreflightFailed, exit 2), or the plan of what to create and how to place servers."""
    return infra.preflight(ctx)


@engine_step("recover.infra")
def infra_step(op_id: str, ctx: RecoverContext, item: InfraItem) -> Ensured:
    return infra.ensure(ctx, item)


@engine_step("recover.floating-ips")
def floating_ips_step(op_id: str, ctx: RecoverContext, servers: dict[str, str]) -> FloatingIps:
    return infra.attach_floating_ips(ctx, servers, now())


def with_infrastructure(ctx: RecoverContext) -> RecoverContext:
    """Workflow code: the preflight, then one step per resource to create; the context
    comes back carrying the plan (server placements, floating IPs)."""
    plan = preflight_step(ctx.op_id, ctx).plan
    if plan is None:
        return ctx
    for item in plan.items:
        infra_step(ctx.op_id, ctx, item, label=item.label)
    return replace(ctx, infra=plan)


@engine_step("recover.restore")
def restore_step(op_id: str, ctx: RecoverContext, vol: VolumePoint) -> Restored | RestoreDamaged:
    try:
        return recover.restore(ctx, vol)
    except damage.POINT_DATA_ERRORS as exc:
        found = damage.finding_of(exc)
        damage.mark_damaged(ctx.point_id, found, op_id)
        return RestoreDamaged(ctx.point_id, vol.member, vol.volume, found.objects, found.reason)


@engine_step("recover.next-point")
def next_point_step(op_id: str, ctx: RecoverContext) -> RecoverContext:
    """The next older intact point (the damaged one is DAMAGED in the catalog now)."""
    return at_point(ctx, choose_point(ctx.group, None, ctx.plan.consistency))


@engine_step("recover.boot")
def boot_step(
    op_id: str, ctx: RecoverContext, wave: int, restored: dict[str, dict[str, VolumeInfo]]
) -> WaveResult:
    return recover.boot_wave(ctx, boot_waves(ctx.plan)[wave], restored)


@engine_step("recover.checks")
def checks_step(op_id: str, ctx: RecoverContext, servers: dict[str, str]) -> CheckReport:
    return recover.run_checks(ctx, servers)


@engine_step("recover.verify")
def verify_step(op_id: str, ctx: RecoverContext, reused: tuple[str, ...]) -> Verified:
    """Read back the data of volumes restored into existing disks (see module doc). Never
    fails the recovery: the servers are up; a read-back that cannot run says why."""
    manifests = [v.manifest for v in ctx.volumes if not v.native and v.key in reused]
    if not manifests:
        return Verified(ctx.point_id, 0)
    n = len(manifests)
    repo_at = traffic.repository_site(ctx.repository)
    # A read-back moves the whole point: not across sites when the repository declares
    # a site other than the recovery's (failback to the home site): only its manifests
    # and packs are checked there; the restore verified every chunk it wrote or kept.
    packs_only = ""
    if repo_at is not None and traffic.crosses(repo_at, ctx.target_site):
        packs_only = (
            f"the repository is at {repo_at}: reading the point back to {ctx.target_site} "
            f"would move all of it between sites; haven repo check {ctx.repository} "
            "--read-data reads it"
        )
    nbytes = 0
    try:
        repo = resolve.group_repository(ctx.group, ctx.repository)
        if packs_only:
            found = damage.check_packs(repo, manifests)
        else:
            found, nbytes = damage.verify_manifests(repo, manifests)
    except HavenError as exc:
        return Verified(ctx.point_id, n, skipped_why=f"{type(exc).__name__}: {exc}")
    between = traffic.across(repo_at, ctx.target_site, nbytes)
    if found is None:
        return Verified(ctx.point_id, n, packs_only=packs_only, bytes_fetched=nbytes,
                        between_sites=between)  # fmt: skip
    damage.mark_damaged(ctx.point_id, found, op_id)
    return Verified(ctx.point_id, n, found.objects, found.reason, damaged=True,
                    packs_only=packs_only, bytes_fetched=nbytes, between_sites=between)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Recovered:
    ctx: RecoverContext  # the context of the point actually used
    servers: dict[str, str]
    rto_s: float
    rpo_s: float
    bytes_written: int
    checks: CheckReport
    verified: Verified
    volumes: dict[str, str] = field(default_factory=dict)  # volume member -> its volume
    floating_ips: tuple[str, ...] = ()
    bytes_fetched: int = 0  # from the repository by the restores
    between_sites: int = 0  # the part of them that crossed between sites

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rto_s": round(self.rto_s, 3),
            "rpo_s": round(self.rpo_s, 3),
            "bytes_written": self.bytes_written,
            "bytes_fetched": self.bytes_fetched,
            "verify_bytes_fetched": self.verified.bytes_fetched,
            traffic.REPOSITORY_BYTES: self.bytes_fetched + self.verified.bytes_fetched,
            traffic.BETWEEN_SITES: self.between_sites + self.verified.between_sites,
            "checks_passed": len(self.checks.passed),
            "checks_failed": len(self.checks.failed),
            "servers": ",".join(f"{k}={v}" for k, v in sorted(self.servers.items())),
            "verified": self.verified.detail(),
            "point_reason": self.ctx.point_why,
            "created": infra.created_summary(self.ctx.op_id),
        }
        if self.volumes:
            out["volumes"] = ",".join(f"{k}={v}" for k, v in sorted(self.volumes.items()))
        if self.floating_ips:
            out["floating_ips"] = "; ".join(self.floating_ips)
        if self.ctx.infra is not None and self.ctx.infra.notes:
            out["notes"] = "; ".join(self.ctx.infra.notes)
        if self.ctx.skipped:
            out["skipped_points"] = "; ".join(s.summary() for s in self.ctx.skipped)
        if self.verified.damaged:
            v = self.verified
            out["point_damage"] = f"{name_objects(v.objects)} ({v.reason})"
        return out


def _refuse(hit: RestoreDamaged) -> PointDamaged:
    return PointDamaged(
        f"point {hit.point_id} is damaged ({name_objects(hit.objects)}: {hit.reason}); a "
        "point that was named, or the final point of a planned operation, is never "
        "replaced by an older one"
    )


def recover_group(ctx: RecoverContext, planned: bool = False) -> Recovered:
    """Workflow code (deterministic): restore (moving to an older intact point when the
    context allows and the point proves damaged), boot in waves, check, read back.
    The project infrastructure comes first: its preflight refuses before anything exists."""
    ctx = with_infrastructure(ctx)
    fetched = between = 0  # over every attempt: a damaged point's restores moved bytes too
    while True:
        restored: dict[str, dict[str, VolumeInfo]] = {}
        members: dict[str, str] = {}
        reused: list[str] = []
        written = 0
        hit: RestoreDamaged | None = None
        for vol in ctx.volumes:
            r = restore_step(ctx.op_id, ctx, vol, label=vol.key)
            if isinstance(r, RestoreDamaged):
                hit = r
                break
            if r.server:  # a volume member without a host is restored, not attached
                restored.setdefault(r.server, {})[r.disk] = r.volume
            if vol.kind is MemberKind.VOLUME:
                members[vol.member] = r.volume.name
            written += r.bytes_written
            fetched += r.bytes_fetched
            between += r.between_sites
            if r.reused:
                reused.append(r.key)
        if hit is None:
            break
        if not ctx.fallback:
            raise _refuse(hit)
        ctx = next_point_step(ctx.op_id, ctx)  # PointDamaged when none is left
        ctx = with_infrastructure(ctx)  # the older point's project (what exists is used)
    servers: dict[str, str] = {}
    green_at = ctx.started_at
    for i, wave in enumerate(boot_waves(ctx.plan)):
        names = "+".join(s for st in wave for s in st.servers)
        res = boot_step(ctx.op_id, ctx, i, restored, label=f"wave-{i + 1}:{names}")
        servers.update(res.servers)
        green_at = res.green_at
    fips: tuple[str, ...] = ()
    if ctx.infra is not None and ctx.infra.floating_ips:
        attached = floating_ips_step(ctx.op_id, ctx, servers)
        fips, green_at = attached.lines, attached.done_at  # reachable where it was
    report = checks_step(ctx.op_id, ctx, servers)
    verified = verify_step(ctx.op_id, ctx, tuple(reused))
    rpo = 0.0 if planned else max(0.0, ctx.started_at - ctx.point_created_at)
    return Recovered(ctx, servers, green_at - ctx.started_at, rpo, written, report, verified,
                     members, fips, fetched, between)  # fmt: skip


def now() -> float:
    return time.time()
