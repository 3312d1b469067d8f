"""Damaged recovery points: recording what failed verification, reading a point back.

A committed point whose data fails verification (a chunk that does not authenticate, a
missing pack or manifest, a restored volume whose checksum differs) becomes DAMAGED in
the catalog, with the repository objects to blame. Recovery skips damaged points (the
newest intact one is used) or refuses with exit 6 when none is left or one was named;
``haven repo check NAME --read-data`` can find a damaged point intact again.

Who finds damage: a restore step (``recover.restore``), the read-back after a recovery
that did not fetch every chunk (``verify_point``: failover into warm-standby replicas
reads only chunks that differ), and ``haven repo check NAME``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from haven.datamover import LockKind
from haven.datamover import Repository as DataRepository
from haven.datamover.errors import ChecksumMismatch, CorruptObject, ManifestNotFound
from haven.datamover.manifest import manifest_key
from haven.datamover.packs import PACK_PREFIX, pack_key
from haven.domain.errors import IllegalTransition, IntegrityError
from haven.domain.points import Damage, RecoveryPoint
from haven.engine import services

# The errors that say a point's data is damaged (not the repository as a whole: a wrong
# key or an unknown format version is not the point's fault).
POINT_DATA_ERRORS: tuple[type[IntegrityError], ...] = (CorruptObject, ChecksumMismatch)
VERIFY_WORKERS = 4


class PointDamaged(IntegrityError):
    """No intact point to recover from, or the point asked for is damaged (exit 6).

    The message names the points and the objects to blame. One string argument only:
    DBOS records a failed step's exception and must be able to rebuild it."""


@dataclass(frozen=True, slots=True)
class Finding:
    """Objects of one volume's data that failed verification, and what was wrong."""

    objects: tuple[str, ...]
    reason: str


def finding_of(exc: IntegrityError) -> Finding:
    if isinstance(exc, CorruptObject):
        return Finding((exc.key,), exc.reason)
    return Finding((), str(exc))


def mark_damaged(point_id: str, finding: Finding, found_by: str) -> RecoveryPoint | None:
    """Record ``finding`` against the point (COMMITTED -> DAMAGED, or more objects on a
    point already DAMAGED). A point in another state (expired meanwhile) is left alone:
    None."""
    damage = Damage(tuple(sorted(set(finding.objects))), finding.reason, datetime.now(UTC),
                    found_by)  # fmt: skip
    with contextlib.suppress(IllegalTransition):
        return services.catalog().mark_point_damaged(point_id, damage)
    return None


def describe(point_id: str, damage: Damage | None) -> str:
    return f"{point_id} ({damage.summary() if damage else 'damaged'})"


def refuse_named(point: RecoveryPoint) -> PointDamaged:
    return PointDamaged(
        f"point {describe(point.id, point.damage)} is damaged: choose another point "
        f"(haven points {point.group}) or check the repository (haven repo check NAME "
        "--read-data) after repairing it"
    )


def merge(findings: Iterable[Finding]) -> Finding | None:
    found = list(findings)
    if not found:
        return None
    objects = tuple(sorted({o for f in found for o in f.objects}))
    reasons: list[str] = []
    for f in found:
        if f.reason and f.reason not in reasons:
            reasons.append(f.reason)
    return Finding(objects, "; ".join(reasons))


def verify_manifest(repo: DataRepository, manifest_id: str) -> tuple[Finding | None, int]:
    """Read every chunk of one volume manifest back from the repository (each is
    authenticated and hash-checked by ``read_chunk``). (None when all is intact, the
    stored bytes read)."""
    try:
        m = repo.load_manifest(manifest_id)
    except ManifestNotFound:
        return Finding((manifest_key(manifest_id),), "manifest missing"), 0
    except CorruptObject as exc:
        return Finding((exc.key,), exc.reason), 0

    def read(chunk_id: bytes) -> Finding | None:
        try:
            repo.read_chunk(chunk_id)
        except CorruptObject as exc:
            return Finding((exc.key,), exc.reason)
        return None

    def where(chunk_id: bytes) -> tuple[str, int]:  # pack order: sequential reads
        loc = repo.index.get(chunk_id)
        return (loc.pack_id, loc.offset) if loc is not None else ("", 0)

    chunks = sorted(m.referenced(), key=where)
    nbytes = sum(loc.length for c in chunks if (loc := repo.index.get(c)) is not None)
    with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
        bad = [f for f in pool.map(read, chunks) if f is not None]
    return merge(bad), nbytes


def verify_manifests(
    repo: DataRepository, manifest_ids: Iterable[str]
) -> tuple[Finding | None, int]:
    """All the given manifests' data read back under a shared lock (prune cannot remove
    packs meanwhile): (their findings merged, None when intact; the stored bytes read)."""
    found: list[Finding] = []
    nbytes = 0
    with repo.lock(LockKind.SHARED):
        repo.reload_index()  # manifests written by other processes since it was opened
        for mid in manifest_ids:
            f, n = verify_manifest(repo, mid)
            nbytes += n
            if f is not None:
                found.append(f)
    return merge(found), nbytes


def check_packs(repo: DataRepository, manifest_ids: Iterable[str]) -> Finding | None:
    """Without reading point data: each manifest is there and authenticates, and every
    pack holding one of its chunks exists, long enough for the chunk (one listing of the
    repository's packs). What it cannot see, a chunk damaged inside a pack of the right
    length, ``haven repo check NAME --read-data`` finds."""
    with repo.lock(LockKind.SHARED):
        repo.reload_index()
        sizes = {info.key: info.size for info in repo.backend.list(PACK_PREFIX)}
        found: list[Finding] = []
        for mid in manifest_ids:
            try:
                m = repo.load_manifest(mid)
            except ManifestNotFound:
                found.append(Finding((manifest_key(mid),), "manifest missing"))
                continue
            except CorruptObject as exc:
                found.append(Finding((exc.key,), exc.reason))
                continue
            ends: dict[str, int] = {}
            for c in m.referenced():
                loc = repo.index.get(c)
                if loc is None:
                    found.append(Finding((), f"chunk {c.hex()} is in no pack index"))
                    continue
                key = pack_key(loc.pack_id)
                ends[key] = max(ends.get(key, 0), loc.offset + loc.length)
            for key, end in sorted(ends.items()):
                if key not in sizes:
                    found.append(Finding((key,), "pack is missing"))
                elif sizes[key] < end:
                    found.append(Finding((key,), "pack is truncated"))
    return merge(found)
