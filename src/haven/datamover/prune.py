"""Forget old recovery points and garbage-collect unreferenced chunks.

Safety argument (see docs/repository-format.md, "Garbage collection"):
- All of prune runs under the EXCLUSIVE repository lock; backups and restores hold a
  SHARED lock from before they load the index until they finish. So while prune
  decides what is garbage, no backup can be about to reference an existing chunk, and
  any backup that starts afterwards loads the index as prune left it.
- Order of writes makes every crash point safe: (1) forgotten manifests are deleted
  (the only intended loss); (2) repacked chunks are written to new packs, each pack
  before its index; (3) only then are old indexes deleted, each before its pack. A
  crash leaves at worst duplicate chunks or orphan packs (packs without an index),
  which the next prune removes; never an index entry or a manifest reference pointing
  at a deleted pack.
- A pack without an index is garbage only because no writer is running: a backup
  writes a pack's index right after the pack, inside its shared lock.
- Prune first checks the repository's structure (:func:`haven.datamover.check.check`)
  under the same lock and refuses to run while it finds any problem: with an index
  missing or damaged, the chunks it listed look unreferenced and their pack looks like an
  orphan, so collecting would delete data that live points need. The operator either
  repairs (``haven repo repair``) or names every damaged object to forget
  (``forget_damaged``: each damaged point's manifest and each damaged head, index or
  pack); anything else stays refused.
- Manifests that no head records are not points (an interrupted backup's, or put there
  from elsewhere): prune deletes them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from haven.datamover.check import CheckReport, check
from haven.datamover.errors import InvalidArgument, ManifestNotFound, PruneRefused
from haven.datamover.heads import HEAD_PREFIX
from haven.datamover.locks import LockKind
from haven.datamover.manifest import MANIFEST_PREFIX, VolumeManifest, manifest_key
from haven.datamover.packs import (
    INDEX_PREFIX,
    PACK_PREFIX,
    PackBuilder,
    PackEntry,
    index_key,
    pack_id_of_key,
    pack_key,
)
from haven.datamover.repository import Repository
from haven.datamover.retention import PointTime, RetentionPolicy, select_keep


@dataclass(slots=True)
class PruneStats:
    dry_run: bool
    forgotten: list[str] = field(default_factory=list)  # manifest ids
    kept: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    orphan_packs_deleted: int = 0
    chunks_deleted: int = 0
    bytes_freed: int = 0
    unrecorded_deleted: list[str] = field(default_factory=list)  # manifests no head listed
    damaged_forgotten: list[str] = field(default_factory=list)  # object keys, as named


def select_forget(manifests: list[VolumeManifest], policy: RetentionPolicy) -> list[VolumeManifest]:
    """Manifests the policy does not keep, applied per volume."""
    by_volume: dict[str, list[VolumeManifest]] = defaultdict(list)
    for m in manifests:
        by_volume[m.volume].append(m)
    out: list[VolumeManifest] = []
    for ms in by_volume.values():
        keep = select_keep([PointTime(m.manifest_id, m.created) for m in ms], policy)
        out.extend(m for m in ms if m.manifest_id not in keep)
    return out


def prune(
    repo: Repository,
    policy: RetentionPolicy | None = None,
    *,
    dry_run: bool = False,
    repack_threshold: float = 0.5,
    forget_ids: Sequence[str] = (),
    forget_damaged: Sequence[str] = (),
) -> PruneStats:
    """Forget manifests ``policy`` does not keep (none if ``policy`` is None) and those
    named in ``forget_ids``, delete packs with no live chunk, and repack packs whose
    live fraction is below ``repack_threshold``. With ``dry_run`` only the statistics
    are computed. Unknown ids in ``forget_ids`` raise :class:`ManifestNotFound`.

    Refuses (:class:`PruneRefused`, exit 6) while the repository has any check problem,
    unless ``forget_damaged`` names exactly the damaged objects (see the module doc)."""
    if not (math.isfinite(repack_threshold) and 0.0 <= repack_threshold <= 1.0):
        raise InvalidArgument("--repack-threshold", "must be a number from 0 to 1")
    stats = PruneStats(dry_run=dry_run)
    with repo.lock(LockKind.EXCLUSIVE):
        repo.reload_index()
        report = check(repo)
        damaged_manifests = _accept_damage(report, set(forget_damaged))
        stats.damaged_forgotten = sorted(set(forget_damaged))
        manifests = repo.manifests()
        forget = select_forget(manifests, policy) if policy else []
        known = {m.manifest_id: m for m in manifests}
        for mid in forget_ids:
            if mid not in known:
                raise ManifestNotFound(f"no manifest {mid}")
            if known[mid] not in forget:
                forget.append(known[mid])
        stats.forgotten = [m.manifest_id for m in forget] + sorted(damaged_manifests)
        gone = set(stats.forgotten)
        kept = [m for m in manifests if m.manifest_id not in gone]
        stats.kept = len(kept)
        live_ids = {m.manifest_id for m in kept}
        stats.unrecorded_deleted = [
            mid for mid in repo.present_manifest_ids() if mid not in live_ids | gone
        ]
        if not dry_run:
            repo.update_heads(remove=sorted(gone))  # the points are gone from here on
            for mid in [*gone, *stats.unrecorded_deleted]:
                repo.backend.delete(manifest_key(mid))
            for key in forget_damaged:
                if key.startswith((HEAD_PREFIX, INDEX_PREFIX, PACK_PREFIX)):
                    repo.backend.delete(key)
            repo.reload_index()
        live: set[bytes] = set()
        for m in kept:
            live |= m.referenced()
        _collect(repo, live, repack_threshold, dry_run, stats)
    return stats


def _accept_damage(report: CheckReport, named: set[str]) -> set[str]:
    """The manifest ids of damaged points to forget, if ``named`` covers every problem
    exactly; else :class:`PruneRefused` saying what is damaged and what to do."""
    needed = set(report.damaged_objects) | {manifest_key(d.manifest_id) for d in report.damage}
    if "heads/" in needed:  # a rollback: nothing to forget, the record itself is wrong
        raise PruneRefused(
            "prune refuses to run: "
            + "; ".join(report.problems[:10])
            + " (see haven repo check; haven repo repair --accept-rollback)"
        )
    extra = sorted(named - needed)
    if extra:
        raise PruneRefused(
            f"--forget-damaged names objects that are not damaged: {', '.join(extra)}"
        )
    missing = sorted(needed - named)
    if missing:
        raise PruneRefused(
            "prune refuses to run on a damaged repository (collecting could delete data "
            "that live points need): "
            + "; ".join(report.problems[:10])
            + ". Run haven repo repair, or name every damaged object to forget with "
            "--forget-damaged: " + " ".join(missing)
        )
    return {k[len(MANIFEST_PREFIX) :] for k in named if k.startswith(MANIFEST_PREFIX)}


def _collect(
    repo: Repository, live: set[bytes], threshold: float, dry_run: bool, stats: PruneStats
) -> None:
    packs = repo.index.packs

    def live_fraction(pack_id: str) -> float:
        entries = packs[pack_id]
        total = sum(e.length for e in entries) or 1
        return sum(e.length for e in entries if e.chunk_id in live) / total

    # Each live chunk is kept in exactly one pack: the fullest one holding it.
    order = sorted(packs, key=live_fraction, reverse=True)
    owner: dict[bytes, str] = {}
    for pack_id in order:
        for e in packs[pack_id]:
            if e.chunk_id in live:
                owner.setdefault(e.chunk_id, pack_id)
    to_delete: list[str] = []
    to_repack: dict[str, list[PackEntry]] = {}
    for pack_id in order:
        entries = packs[pack_id]
        mine = [e for e in entries if owner.get(e.chunk_id) == pack_id]
        mine_bytes = sum(e.length for e in mine)
        all_bytes = sum(e.length for e in entries) or 1
        if not mine:
            to_delete.append(pack_id)
        elif mine_bytes / all_bytes < threshold:
            to_repack[pack_id] = mine
    indexed = set(packs)
    orphans = [
        pack_id_of_key(i.key)
        for i in repo.backend.list(PACK_PREFIX)
        if pack_id_of_key(i.key) not in indexed
    ]
    stats.packs_deleted = len(to_delete)
    stats.packs_repacked = len(to_repack)
    stats.orphan_packs_deleted = len(orphans)
    stats.chunks_deleted = sum(
        1 for p in [*to_delete, *to_repack] for e in packs[p] if owner.get(e.chunk_id) != p
    )
    sizes = {pack_id_of_key(i.key): i.size for i in repo.backend.list(PACK_PREFIX)}
    stats.bytes_freed = sum(sizes.get(p, 0) for p in [*to_delete, *orphans])
    if dry_run:
        return
    if to_repack:
        stats.packs_written = _repack(repo, to_repack)
        stats.bytes_freed += sum(sizes.get(p, 0) for p in to_repack)
    for pack_id in [*to_delete, *to_repack]:
        repo.backend.delete(index_key(pack_id))
        repo.backend.delete(pack_key(pack_id))
    for pack_id in orphans:
        repo.backend.delete(pack_key(pack_id))
    cleanup = getattr(repo.backend, "cleanup_temp", None)
    if callable(cleanup):
        cleanup()
    repo.reload_index()


def _repack(repo: Repository, to_repack: dict[str, list[PackEntry]]) -> int:
    """Copy the still-live chunk blobs (still encrypted: blobs are position-independent)
    into new packs; returns how many packs were written."""
    builder = PackBuilder(repo.keys, repo.config.pack_size)
    written = 0
    for pack_id, entries in to_repack.items():
        if not entries:
            continue
        data = repo.backend.get(pack_key(pack_id))
        for e in entries:
            sealed = builder.add(e.chunk_id, data[e.offset : e.offset + e.length])
            if sealed is not None:
                repo.upload_pack(sealed)
                written += 1
    tail = builder.flush()
    if tail is not None:
        repo.upload_pack(tail)
        written += 1
    return written
