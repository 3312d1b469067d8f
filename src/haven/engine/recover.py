"""Bringing a group's servers up at a site from a recovery point (failover, drill, failback).

Steps are idempotent by name: a volume or server whose target name already exists is
reused, never created twice; everything created is recorded in the catalog (against the
operation) before the step returns, so that cleanup removes exactly that.

Stages boot in waves (``boot_waves``): every server of a wave is defined, started and
gated in parallel; a wave starts when the previous one is green.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from haven.catalog.store import CreatedResource
from haven.datamover import restore_volume
from haven.domain.errors import ExternalError, HavenError, ValidationError
from haven.domain.groups import MemberKind
from haven.domain.inventory import PowerState, ServerSpec, VolumeInfo
from haven.domain.plans import Probe, ProbeKind, Stage
from haven.domain.points import VolumePoint, name_objects
from haven.domain.project import LedgerKind
from haven.engine import infra, progress, resolve, services, traffic
from haven.engine.hooks import run_hooks
from haven.engine.model import Note, RecoverContext, recovered_volume_name
from haven.engine.ports import NativeBackups, ProjectServers, ServerAddresses
from haven.engine.steps import FailedOutcome
from haven.engine.volumes import same_volume_name
from haven.sites.base import (
    AgentGate,
    CommandGate,
    ReadinessGate,
    SiteDriver,
    StopOutcome,
    TcpGate,
)


class GateFailed(ExternalError):
    retryable = True


def volume_name(ctx: RecoverContext, vol: VolumePoint) -> str:
    return recovered_volume_name(ctx.group, vol, ctx.volume_suffix)


def _record(ctx: RecoverContext, kind: LedgerKind, ref: str, name: str) -> None:
    services.catalog().record_created(
        CreatedResource(ctx.op_id, ctx.group, ctx.target_site, kind, ref, name)
    )


@dataclass(frozen=True, slots=True)
class Restored:
    server: str  # the server it is a disk of at recovery ("": a volume member without host)
    disk: str
    volume: VolumeInfo
    chunks_written: int
    bytes_written: int
    reused: bool
    key: str = ""  # the VolumePoint's key
    bytes_fetched: int = 0  # stored bytes read from the repository
    between_sites: int = 0  # the part of them that crossed between sites (engine/traffic.py)

    def detail(self) -> str:
        how = "into the existing volume" if self.reused else "into a new volume"
        return (
            f"{self.volume.name}: {self.bytes_written} B written {how}; {self.bytes_fetched} B "
            f"fetched from the repository, {self.between_sites} B of them between sites"
        )


@dataclass(frozen=True, slots=True)
class RestoreDamaged(FailedOutcome):
    """A restore stopped by damaged point data (the point is marked DAMAGED)."""

    point_id: str
    server: str
    disk: str
    objects: tuple[str, ...]
    reason: str

    def detail(self) -> str:
        return f"point {self.point_id} is damaged: {name_objects(self.objects)} ({self.reason})"


@dataclass(frozen=True, slots=True)
class Verified:
    """The read-back of a recovered point's data that the restore did not fetch."""

    point_id: str
    volumes: int  # volume manifests read back (0: the restore fetched every chunk)
    objects: tuple[str, ...] = ()
    reason: str = ""
    damaged: bool = False
    skipped_why: str = ""  # why nothing could be read back (repository unreachable...)
    packs_only: str = ""  # why the data was not read back, only its packs checked
    bytes_fetched: int = 0  # stored bytes read back from the repository
    between_sites: int = 0  # the part of them that crossed between sites

    def detail(self) -> str:
        if self.skipped_why:
            return f"not verified: {self.skipped_why}"
        if self.damaged:
            return f"point {self.point_id} is damaged: {name_objects(self.objects)} ({self.reason})"
        if not self.volumes:
            return "nothing to read back: the restore fetched and verified every chunk"
        if self.packs_only:
            return (
                f"{self.volumes} volume(s): manifests and packs present in the repository; "
                f"data not read back ({self.packs_only})"
            )
        return (
            f"{self.volumes} volume(s) read back from the repository: intact "
            f"({self.bytes_fetched} B, {self.between_sites} B of them between sites)"
        )


def restore(ctx: RecoverContext, vol: VolumePoint) -> Restored:
    drv = resolve.driver(ctx.target_site)
    key = vol.key
    server = vol.host if vol.kind is MemberKind.VOLUME else vol.member
    name = volume_name(ctx, vol)
    target = ctx.existing_volumes.get(key)
    reused = target is not None
    if target is None:
        found = [v for v in drv.list_volumes() if same_volume_name(v, name)]
        if found and (ctx.reuse_replicas or ctx.volume_suffix):
            target, reused = found[0], True
        elif found:
            raise ExternalError(f"volume {name} exists at {ctx.target_site} and may not be reused")
        else:
            target = _create_volume(ctx, drv, vol, name)
            _record(ctx, LedgerKind.VOLUME, target.id, name)
    if vol.native:  # data path cinder-backup: the target site restores its own copy
        if not isinstance(drv, NativeBackups):
            raise ValidationError(
                f"sites.{ctx.target_site}.driver",
                f"point {ctx.point_id} was kept by the site's backup service; "
                f"{ctx.target_site} cannot restore it",
            )
        written = drv.restore_native(vol.manifest, target)
        return Restored(server, vol.volume, target, 0, written, reused, key)
    repo = resolve.group_repository(ctx.group, ctx.repository)
    with drv.open_volume_writer(target) as dst:
        st = restore_volume(repo, vol.manifest, dst, into_existing=True,
                            progress=progress.reporter(f"restore {name}"))  # fmt: skip
    crossed = traffic.across(traffic.repository_site(ctx.repository), ctx.target_site,
                             st.bytes_fetched)  # fmt: skip
    return Restored(server, vol.volume, target, st.chunks_written, st.bytes_written, reused, key,
                    st.bytes_fetched, crossed)  # fmt: skip


def _create_volume(ctx: RecoverContext, drv: SiteDriver, vol: VolumePoint, name: str) -> VolumeInfo:
    """A new volume, of the volume type the disk had where the site keeps types."""
    placed = ctx.infra.placements.get(vol.member) if ctx.infra is not None else None
    vtype = placed.volume_types.get(vol.volume) if placed is not None else None
    if vtype and isinstance(drv, ProjectServers):
        return drv.create_typed_volume(name, vol.size, vtype)
    return drv.create_volume(name, vol.size)


def probe_host(drv: SiteDriver, server_id: str, name: str) -> str:
    """Where TCP probes reach a server from Haven's host: the first address the site
    reports (floating before fixed), else its name (resolved by the host's resolver)."""
    if isinstance(drv, ServerAddresses):
        found = drv.server_addresses(server_id)
        if found:
            return found[0]
    return name


def gates_of(probes: tuple[Probe, ...], host: str) -> list[tuple[ReadinessGate, float]]:
    out: list[tuple[ReadinessGate, float]] = []
    for p in probes:
        gate: ReadinessGate
        if p.kind is ProbeKind.AGENT:
            gate = AgentGate()
        elif p.kind is ProbeKind.TCP:
            gate = TcpGate(host, p.port or 0)
        else:
            gate = CommandGate(tuple(p.command))
        out.append((gate, float(p.timeout_seconds)))
    return out


@dataclass(frozen=True, slots=True)
class WaveResult:
    servers: dict[str, str]  # server name -> id at the target
    green_at: float  # time.time() when the last gate of the wave passed
    stages: tuple[str, ...] = ()  # the wave's stage names (those the plan names)

    def detail(self) -> str:
        named = f" (stage {', '.join(self.stages)})" if self.stages else ""
        return "up and gated: " + ", ".join(sorted(self.servers)) + named


def _ensure_server(
    ctx: RecoverContext, drv: SiteDriver, server: str, volumes: dict[str, VolumeInfo]
) -> str:
    if server in ctx.existing_servers:
        return ctx.existing_servers[server]
    name = ctx.names[server]
    for info in drv.list_servers():
        if info.name == name:
            return info.id
    spec = ctx.specs[server]
    placed = ctx.infra.placements.get(server) if ctx.infra is not None else None
    if placed is not None and isinstance(drv, ProjectServers):
        # flavor, keypair, security groups, ports with fixed IPs, as the preflight planned
        out = drv.define_placed_server(spec, name=name, placement=placed, volumes=volumes)
        infra.record(ctx, out.created)
        sid = out.server_id
    else:
        sid = drv.define_server(spec, name=name, network_map=_net_map(ctx, spec),
                                volumes=volumes)  # fmt: skip
    _record(ctx, LedgerKind.SERVER, sid, name)
    return sid


def _net_map(ctx: RecoverContext, spec: ServerSpec) -> dict[str, str]:
    if ctx.bubble:  # a drill: no NIC may reach a production network
        return {n.network: ctx.bubble for n in spec.nics}
    return {n.network: ctx.network_map.get(n.network, n.network) for n in spec.nics}


def _bring_up(
    ctx: RecoverContext, stage: Stage, server: str, volumes: dict[str, VolumeInfo]
) -> str:
    drv = resolve.driver(ctx.target_site)
    sid = _ensure_server(ctx, drv, server, volumes)
    if drv.get_server(sid).state is not PowerState.RUNNING:
        drv.start_server(sid)
    gates = tuple(g for g in stage.gates if g.server in (None, server))  # a gate may name one
    for gate, timeout in gates_of(gates, probe_host(drv, sid, ctx.names[server])):
        res = drv.wait_ready(sid, [gate], timeout_s=timeout)
        if not res.ready:
            raise GateFailed(
                f"{ctx.names[server]}: gate {type(gate).__name__} failed: {res.detail}"
            )
    for h in stage.post_boot:
        run_hooks(drv, server, sid, (h,), "post-boot")
    return sid


def boot_wave(
    ctx: RecoverContext, wave: list[Stage], restored: dict[str, dict[str, VolumeInfo]]
) -> WaveResult:
    jobs = [(stage, server) for stage in wave for server in stage.servers]
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = {
            server: pool.submit(_bring_up, ctx, stage, server, restored.get(server, {}))
            for stage, server in jobs
        }
        ids = {server: f.result() for server, f in futures.items()}
    return WaveResult(ids, time.time(), tuple(st.name for st in wave if st.name))


@dataclass(frozen=True, slots=True)
class CheckReport:
    passed: tuple[str, ...]
    failed: tuple[str, ...]

    def detail(self) -> str:
        return f"{len(self.passed)} checks passed, {len(self.failed)} failed" + (
            f": {', '.join(self.failed)}" if self.failed else ""
        )


def run_checks(ctx: RecoverContext, servers: dict[str, str]) -> CheckReport:
    drv = resolve.driver(ctx.target_site)
    passed: list[str] = []
    failed: list[str] = []
    for i, probe in enumerate(ctx.plan.checks):
        targets = [probe.server] if probe.server else sorted(servers)
        for server in targets:
            label = f"check[{i}] {probe.kind.value} on {server}"
            ok = server in servers
            host = probe_host(drv, servers[server], ctx.names[server]) if ok else ""
            for gate, timeout in gates_of((probe,), host):
                ok = ok and drv.wait_ready(servers[server], [gate], timeout_s=timeout).ready
            (passed if ok else failed).append(label)
    return CheckReport(tuple(passed), tuple(failed))


def stop_servers(site: str, server_ids: dict[str, str], waves: list[list[str]]) -> Note:
    """Stop (never delete) servers wave by wave (callers pass the boot waves reversed);
    the servers of one wave stop in parallel. Already stopped ones are skipped.

    Each guest is asked to ``sync`` first, then to shut down; a guest still running after
    its driver's timeout (STOP_DEADLINE_S - 5: its agent or ACPI handler hung) is powered
    off, which after the sync loses nothing an application had written. The driver's call
    may itself hang on a dead agent, so it runs in a helper thread and STOP_DEADLINE_S is
    kept here. The note names every server that had to be forced off ("forced after
    sync"); ``data`` holds each stopped server's StopOutcome value.
    """
    drv = resolve.driver(site)
    done: list[str] = []
    outcomes: dict[str, str] = {}
    for wave in waves:
        running = [
            (n, server_ids[n])
            for n in wave
            if n in server_ids and drv.get_server(server_ids[n]).state is PowerState.RUNNING
        ]
        stoppers = []
        answers: dict[str, StopOutcome] = {}
        for _name, sid in running:
            with contextlib.suppress(HavenError):
                drv.guest_exec(sid, ["sync"], timeout_s=10)
            t = threading.Thread(target=_stop_quietly, args=(drv, sid, answers), daemon=True)
            t.start()
            stoppers.append(t)
        deadline = time.monotonic() + STOP_DEADLINE_S
        for t in stoppers:
            t.join(max(0.0, deadline - time.monotonic()))
        for name, sid in running:
            outcome = answers.get(sid)
            if outcome is None:  # the driver hung or failed: see for ourselves
                outcome = StopOutcome.UNREPORTED
                if drv.get_server(sid).state is PowerState.RUNNING:
                    drv.destroy_server(sid)
                    outcome = StopOutcome.FORCED
            outcomes[name] = outcome.value
            done.append(f"{name}{' (forced after sync)' if outcome is StopOutcome.FORCED else ''}")
    return Note(f"stopped at {site}: {', '.join(done) or 'nothing (already stopped)'}", outcomes)


STOP_DEADLINE_S = 20.0  # the lab guest powers off in ~1 s once asked (build-guest.sh)


def _stop_quietly(drv: SiteDriver, sid: str, answers: dict[str, StopOutcome]) -> None:
    with contextlib.suppress(HavenError):
        answers[sid] = drv.stop_server(sid, timeout_s=STOP_DEADLINE_S - 5)
