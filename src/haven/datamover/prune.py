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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from haven.datamover.errors import ManifestNotFound
from haven.datamover.locks import LockKind
from haven.datamover.manifest import VolumeManifest
from haven.datamover.packs import (
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
) -> PruneStats:
    """Forget manifests ``policy`` does not keep (none if ``policy`` is None) and those
    named in ``forget_ids``, delete packs with no live chunk, and repack packs whose
    live fraction is below ``repack_threshold``. With ``dry_run`` only the statistics
    are computed. Unknown ids in ``forget_ids`` raise :class:`ManifestNotFound`."""
    stats = PruneStats(dry_run=dry_run)
    with repo.lock(LockKind.EXCLUSIVE):
        repo.reload_index()
        manifests = repo.manifests()
        forget = select_forget(manifests, policy) if policy else []
        known = {m.manifest_id: m for m in manifests}
        for mid in forget_ids:
            if mid not in known:
                raise ManifestNotFound(f"no manifest {mid}")
            if known[mid] not in forget:
                forget.append(known[mid])
        stats.forgotten = [m.manifest_id for m in forget]
        gone = set(stats.forgotten)
        kept = [m for m in manifests if m.manifest_id not in gone]
        stats.kept = len(kept)
        if not dry_run:
            for m in forget:
                repo.delete_manifest(m.manifest_id)
        live: set[bytes] = set()
        for m in kept:
            live |= m.referenced()
        _collect(repo, live, repack_threshold, dry_run, stats)
    return stats


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
