"""Warm-standby replicas: where a new point's data goes at the standby site.

A replica update restores the point into an existing volume, which writes (and fetches
from the repository) only the chunks that differ. So the best target is the volume that
already holds the most of the point's data, and that is the group's own disk when the
standby site has one:

- the home site after an unplanned failover (reverse protection from the recovery site)
  still holds the home servers' disks as they were at the failover point: the server
  member's disk (its own name at the group's source site) and the volume member's own
  volume (``volumes.find``);
- the recovery site after a failback holds the recovered servers, stopped: their disks
  are the volumes recovery restored into, ``<group>-<member>-<disk>`` (and
  ``<group>-<volume>``), the replicas' own names.

Only where the standby site holds no such disk is a replica volume of its own created
(``<group>-<member>-<disk>``, recorded as created by the operation).

Rules: a disk attached to a server that is not shut off (running, paused...) is never
written: the update is skipped and the step log says why (failover then starts from what
the volume holds; failback stops the home servers and restores the delta itself). Sites
without ``Capability.VOLUME_OVERWRITE`` (OpenStack: a volume that had snapshots cannot be
rewritten in place safely there) keep the replicas of their own name only: at the home
site after an unplanned failover these are volumes beside the home servers' disks, built
from the repository in full by the first reverse protection (failback on such a site
restores onto them: see ``workflows/failback.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from haven.catalog.store import CreatedResource
from haven.datamover import restore_volume
from haven.domain.errors import HavenError
from haven.domain.groups import MemberKind
from haven.domain.inventory import PowerState, ServerInfo, VolumeInfo
from haven.domain.points import VolumePoint
from haven.domain.project import LedgerKind
from haven.engine import resolve, services, traffic, volumes
from haven.engine.model import ProtectContext, recovered_volume_name
from haven.sites.base import Capability, SiteDriver


class ReplicaTarget(Enum):
    OWN_DISK = "own-disk"  # the group's own disk at the standby site (home server's...)
    REPLICA = "replica"  # an existing volume of the replica's name
    NEW = "new"  # created now: the standby site held nothing of the group's for it
    SKIPPED = "skipped"  # not updated (see ``why``)


@dataclass(frozen=True, slots=True)
class ReplicaOutcome:
    """What one replica update did. ``bytes_fetched``: stored bytes read from the
    repository; ``between_sites``: the part of them that crossed between sites
    (``engine/traffic.py``)."""

    key: str  # the VolumePoint's key ("db/vda")
    volume: str  # the volume written at the standby site ("" when skipped)
    target: ReplicaTarget
    why: str = ""  # whose disk it is, or why it was skipped
    chunks_written: int = 0
    chunks_unchanged: int = 0
    bytes_fetched: int = 0
    bytes_written: int = 0
    between_sites: int = 0

    def detail(self) -> str:
        if self.target is ReplicaTarget.SKIPPED:
            return f"replica of {self.key} not updated: {self.why}"
        into = {
            ReplicaTarget.OWN_DISK: f"into {self.why}",
            ReplicaTarget.REPLICA: "into the existing replica",
            ReplicaTarget.NEW: "into a new replica",
        }[self.target]
        return (
            f"{self.volume} ({into}): {self.chunks_written} chunks written, "
            f"{self.chunks_unchanged} same; {self.bytes_fetched} B fetched from the "
            f"repository, {self.between_sites} B of them between sites"
        )


def _users(servers: list[ServerInfo], volume_id: str) -> list[ServerInfo]:
    return [s for s in servers if any(d.source == volume_id for d in s.spec.disks)]


def _own_disk(
    ctx: ProtectContext,
    drv: SiteDriver,
    vol: VolumePoint,
    servers: list[ServerInfo],
    found: list[VolumeInfo],
) -> tuple[VolumeInfo, str] | None:
    """The group's own disk for ``vol`` at the standby site, with whose it is: a home
    server's disk (server members are named by their own names at the group's source
    site only), or a volume member's own volume."""
    g = resolve.group(ctx.group)
    if vol.kind is MemberKind.VOLUME:
        own = volumes.find(drv, g, vol.member, ctx.standby_site)
        return (own, f"volume member {vol.member}'s own volume") if own else None
    if ctx.standby_site != g.source_site:
        return None  # the recovered servers' disks carry the replica's name
    home = next((s for s in servers if s.name == vol.member), None)
    disk = next((d for d in home.spec.disks if d.target == vol.volume), None) if home else None
    if home is None or disk is None or not disk.source:
        return None
    by_id = {v.id: v for v in found}
    info = by_id.get(disk.source) or VolumeInfo(
        disk.source, disk.source.rsplit("/", 1)[-1], disk.size_bytes, disk.format
    )
    return info, f"{vol.member}'s own disk {vol.volume}"


def _target(
    ctx: ProtectContext, drv: SiteDriver, vol: VolumePoint
) -> tuple[VolumeInfo | None, ReplicaTarget, str]:
    """(volume, how, why) for ``vol``'s replica; volume None: create one."""
    name = recovered_volume_name(ctx.group, vol)
    servers = drv.list_servers()
    found = drv.list_volumes()
    own = None
    if Capability.VOLUME_OVERWRITE in drv.capabilities():
        own = _own_disk(ctx, drv, vol, servers, found)
    if own is not None:
        target, how, why = own[0], ReplicaTarget.OWN_DISK, own[1]
    else:
        named = [v for v in found if volumes.same_volume_name(v, name)]
        if not named:
            return None, ReplicaTarget.NEW, ""
        target, how, why = named[0], ReplicaTarget.REPLICA, ""
    busy = [s for s in _users(servers, target.id) if s.state is not PowerState.SHUTOFF]
    if busy:
        s = busy[0]
        why = (
            f"{target.name} is a disk of server {s.name} at {ctx.standby_site}, which is "
            f"{s.state.value}: a disk in use is never written (it is updated once the "
            "server is shut off; a failover or failback stops it first)"
        )
        return target, ReplicaTarget.SKIPPED, why
    return target, how, why


def update(ctx: ProtectContext, vol: VolumePoint, op_id: str) -> ReplicaOutcome:
    """Restore the point's ``vol`` into its replica at the standby site. A failure here
    does not fail the point: the outcome says why nothing was updated."""
    try:
        drv = resolve.driver(ctx.standby_site)
        target, how, why = _target(ctx, drv, vol)
        if how is ReplicaTarget.SKIPPED:
            return ReplicaOutcome(vol.key, "", how, why)
        if target is None:
            name = recovered_volume_name(ctx.group, vol)
            target = drv.create_volume(name, vol.size)
            services.catalog().record_created(
                CreatedResource(
                    op_id, ctx.group, ctx.standby_site, LedgerKind.VOLUME, target.id, name
                )
            )
        repo = resolve.group_repository(ctx.group, ctx.repository, ctx.bandwidth_limit)
        with drv.open_volume_writer(target) as dst:
            st = restore_volume(repo, vol.manifest, dst, into_existing=True)
    except HavenError as exc:
        return ReplicaOutcome(vol.key, "", ReplicaTarget.SKIPPED, f"{type(exc).__name__}: {exc}")
    crossed = traffic.across(ctx.repository_site, ctx.standby_site, st.bytes_fetched)
    return ReplicaOutcome(vol.key, target.name, how, why, st.chunks_written,
                          st.chunks_unchanged, st.bytes_fetched, st.bytes_written,
                          crossed)  # fmt: skip
