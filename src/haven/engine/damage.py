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


def verify_manifest(repo: DataRepository, manifest_id: str) -> Finding | None:
    """Read every chunk of one volume manifest back from the repository (each is
    authenticated and hash-checked by ``read_chunk``). None when all is intact."""
    try:
        m = repo.load_manifest(manifest_id)
    except ManifestNotFound:
        return Finding((manifest_key(manifest_id),), "manifest missing")
    except CorruptObject as exc:
        return Finding((exc.key,), exc.reason)

    def read(chunk_id: bytes) -> Finding | None:
        try:
            repo.read_chunk(chunk_id)
        except CorruptObject as exc:
            return Finding((exc.key,), exc.reason)
        return None

    def where(chunk_id: bytes) -> tuple[str, int]:  # pack order: sequential reads
        loc = repo.index.get(chunk_id)
        return (loc.pack_id, loc.offset) if loc is not None else ("", 0)

    with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
        bad = [f for f in pool.map(read, sorted(m.referenced(), key=where)) if f is not None]
    return merge(bad)


def verify_manifests(repo: DataRepository, manifest_ids: Iterable[str]) -> Finding | None:
    """All the given manifests' data read back under a shared lock (prune cannot remove
    packs meanwhile); their findings merged (None: intact)."""
    with repo.lock(LockKind.SHARED):
        repo.reload_index()  # manifests written by other processes since it was opened
        found = [f for mid in manifest_ids if (f := verify_manifest(repo, mid)) is not None]
    return merge(found)
