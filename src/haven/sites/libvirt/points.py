"""Taking a group point on one libvirt host: plan, pre-sync, freeze/backup-begin/thaw.

Everything that can happen outside the freeze window does: domains are looked up, disks
listed and agent response timeouts set before the first freeze; each guest is asked to
``sync`` first (dirty page cache is what makes fsfreeze slow while applications write);
backup jobs of all domains start in parallel inside the window.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import libvirt

from haven.domain.inventory import VolumeInfo
from haven.sites import consistency
from haven.sites.base import PointRequest
from haven.sites.consistency import GroupPointOutcome
from haven.sites.errors import SiteError, SiteInputError
from haven.sites.libvirt import agent, backup, volumes
from haven.sites.libvirt.conn import libvirt_errors

PRESYNC_TIMEOUT_S = 10.0


@dataclass
class Member:
    dom: libvirt.virDomain
    targets: tuple[str, ...]
    all_targets: tuple[str, ...]
    sizes: dict[str, int]
    quiesce: bool


@dataclass
class OpenPoint:
    jobs: dict[str, tuple[libvirt.virDomain, backup.BackupJob]] = field(default_factory=dict)

    def end(self) -> None:
        for dom, job in self.jobs.values():
            backup.end(dom, job)
        self.jobs.clear()


class _Ops:
    """QuiesceOps over looked-up domains; sets each agent timeout only when it changes."""

    def __init__(self, members: dict[str, Member]) -> None:
        self._m = members
        self._timeouts: dict[str, int] = {}

    def _timeout(self, sid: str, timeout_s: float) -> libvirt.virDomain:
        dom = self._m[sid].dom
        want = max(1, math.ceil(timeout_s))
        if self._timeouts.get(sid) != want:
            with libvirt_errors(f"agent timeout on {dom.name()}"):
                dom.agentSetResponseTimeout(want, 0)
            self._timeouts[sid] = want
        return dom

    def freeze(self, server_id: str, timeout_s: float) -> None:
        agent.freeze(self._timeout(server_id, timeout_s), timeout_s, set_timeout=False)

    def thaw(self, server_id: str, timeout_s: float) -> None:
        agent.thaw(self._timeout(server_id, timeout_s), timeout_s, set_timeout=False)


def _presync(members: list[Member]) -> None:
    """Best effort, in parallel, outside the window: a failure here is not a quiesce failure."""

    def one(m: Member) -> None:
        with contextlib.suppress(SiteError):
            agent.guest_exec(m.dom, ["sync"], PRESYNC_TIMEOUT_S)

    with ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
        list(pool.map(one, members))


def take(
    members: dict[str, Member],
    request: PointRequest,
    scratch_dir: str,
    socket_dir: str,
    presync: bool = True,
    at_rest: Sequence[VolumeInfo] = (),
) -> tuple[GroupPointOutcome, OpenPoint]:
    """Run the consistency protocol; on success the point's backup jobs are open and each
    volume ``at_rest`` holds an internal snapshot named after the point (taken in the same
    window as the jobs)."""
    ops = _Ops(members)
    quiesced = [m for m in members.values() if m.quiesce]
    for sid, m in members.items():
        if m.quiesce:
            with contextlib.suppress(SiteError):
                ops._timeout(sid, request.freeze_timeout_s)
    if presync and quiesced:
        _presync(quiesced)
    opened = OpenPoint()

    def begin(m: Member) -> tuple[str, tuple[libvirt.virDomain, backup.BackupJob]]:
        job = backup.begin(
            m.dom, request.point_id, request.parent_point_id, m.targets, m.all_targets,
            scratch_dir, socket_dir,
        )  # fmt: skip
        return m.dom.UUIDString(), (m.dom, job)

    def snapshot() -> None:
        # one backup job per domain, all started concurrently while every member is frozen
        errors = []
        with ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
            futures = [pool.submit(begin, m) for m in members.values()]
            for f in futures:
                try:
                    sid, job = f.result()
                    opened.jobs[sid] = job
                except BaseException as exc:
                    errors.append(exc)
        name = volumes.snapshot_name(request.point_id)
        taken: list[VolumeInfo] = []
        for vol in at_rest if not errors else ():
            try:
                volumes.create_snapshot(vol, name)
                taken.append(vol)
            except SiteError as exc:
                errors.append(exc)
                break
        if errors:
            opened.end()
            for vol in taken:
                volumes.delete_snapshot(vol.id, name)
            raise errors[0]

    outcome = consistency.take_group_point(ops, request, snapshot)
    return outcome, opened


def check_targets(
    sid: str, wanted: tuple[str, ...] | None, all_t: tuple[str, ...]
) -> tuple[str, ...]:
    targets = wanted if wanted is not None else all_t
    unknown = set(targets) - set(all_t)
    if unknown:
        raise SiteInputError(f"members.{sid}.disks", f"unknown {sorted(unknown)}")
    return targets
