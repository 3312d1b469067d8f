"""Repository check: structure, references and (optionally) every object's tag.

:func:`check` never raises for problems it finds; it returns a :class:`CheckReport`
naming every problem and every recovery point (manifest) whose data is damaged or
unreachable. Callers (the CLI) turn a non-clean report into
:class:`RepositoryCheckFailed` (exit code 6).

Levels: structure (config, every index and manifest decrypts and parses, every pack
named by an index exists and has the right size, every chunk a manifest references is
in an index) and, with ``read_data``, every pack is read, its trailer is compared with
its index and every chunk blob is authenticated, decompressed and hash-checked.
Packs without an index (left by a crashed writer) are reported as warnings only.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from haven.datamover.backends.base import ObjectNotFound
from haven.datamover.codec import decode_chunk
from haven.datamover.errors import CorruptObject, RepositoryCheckFailed
from haven.datamover.manifest import manifest_key
from haven.datamover.packs import (
    INDEX_PREFIX,
    PACK_PREFIX,
    PackEntry,
    index_key,
    open_index,
    open_trailer,
    pack_id_of_key,
    pack_key,
)
from haven.datamover.progress import ProgressCallback, ProgressMeter
from haven.datamover.repository import Repository


@dataclass(frozen=True, slots=True)
class PointDamage:
    """One recovery point (volume manifest) whose data is damaged or unreachable, with
    the objects to blame (``data/..``, ``index/..``, ``manifests/..``, ``points/..``)."""

    manifest_id: str
    volume: str  # "" when the manifest itself is unreadable
    point_id: str  # "" likewise
    objects: tuple[str, ...]
    reason: str


@dataclass(slots=True)
class CheckReport:
    manifests: int = 0
    packs: int = 0
    chunks: int = 0
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    affected_points: list[str] = field(default_factory=list)  # "<manifest_id> (<volume>@<point>)"
    damage: list[PointDamage] = field(default_factory=list)  # the same points, structured

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise RepositoryCheckFailed(self.problems, self.affected_points)


def check(
    repo: Repository,
    *,
    read_data: bool = False,
    progress: ProgressCallback | None = None,
    workers: int = 4,
) -> CheckReport:
    report = CheckReport()
    bad_chunks: dict[bytes, str] = {}  # chunk id -> the object to blame
    pack_sizes = {pack_id_of_key(i.key): i.size for i in repo.backend.list(PACK_PREFIX)}
    indexes: dict[str, list[PackEntry]] = {}
    for info in repo.backend.list(INDEX_PREFIX):
        pack_id = info.key[len(INDEX_PREFIX) :]
        try:
            indexes[pack_id] = open_index(repo.keys, pack_id, repo.backend.get(info.key))
        except (CorruptObject, ObjectNotFound) as exc:
            report.problems.append(f"index {pack_id}: {exc}")
    known: set[bytes] = set()
    for pack_id, entries in indexes.items():
        size = pack_sizes.get(pack_id)
        ids = {e.chunk_id for e in entries}
        if size is None:
            report.problems.append(f"pack {pack_id} is missing ({len(entries)} chunks)")
            bad_chunks.update(dict.fromkeys(ids, pack_key(pack_id)))
        elif entries and max(e.offset + e.length for e in entries) > size:
            report.problems.append(f"pack {pack_id} is truncated")
            bad_chunks.update(dict.fromkeys(ids, pack_key(pack_id)))
        known |= ids
    for pack_id in pack_sizes.keys() - indexes.keys():
        report.warnings.append(f"pack {pack_id} has no index (left by an interrupted writer)")
    report.packs = len(indexes)
    report.chunks = len(known)
    if read_data:
        _read_packs(repo, indexes, pack_sizes, report, bad_chunks, progress, workers)
    _check_manifests(repo, known, bad_chunks, report)
    return report


def _read_packs(
    repo: Repository,
    indexes: dict[str, list[PackEntry]],
    pack_sizes: dict[str, int],
    report: CheckReport,
    bad: dict[bytes, str],
    progress: ProgressCallback | None,
    workers: int,
) -> None:
    present = [p for p in indexes if p in pack_sizes]
    meter = ProgressMeter("check", sum(pack_sizes[p] for p in present), progress)

    def verify(pack_id: str) -> tuple[list[str], set[bytes]]:
        problems: list[str] = []
        damaged: set[bytes] = set()
        key = pack_key(pack_id)
        try:
            data = repo.backend.get(key)
        except ObjectNotFound:
            return [f"pack {pack_id} vanished during check"], {e.chunk_id for e in indexes[pack_id]}
        try:
            trailer = open_trailer(repo.keys, pack_id, data)
            if sorted(trailer, key=lambda e: e.offset) != sorted(
                indexes[pack_id], key=lambda e: e.offset
            ):
                problems.append(f"pack {pack_id}: trailer does not match its index")
        except CorruptObject as exc:
            problems.append(str(exc))
        view = memoryview(data)
        for e in indexes[pack_id]:
            try:
                decode_chunk(repo.keys, e.chunk_id, view[e.offset : e.offset + e.length], key)
            except CorruptObject as exc:
                problems.append(f"{exc} (chunk {e.chunk_id.hex()[:16]} at offset {e.offset})")
                damaged.add(e.chunk_id)
        meter.add(len(data))
        return problems, damaged

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for pack_id, (problems, damaged) in zip(present, pool.map(verify, present), strict=True):
            report.problems.extend(problems)
            bad.update(dict.fromkeys(damaged, pack_key(pack_id)))
    report.bytes_read = meter.done
    meter.finish()


def _check_manifests(
    repo: Repository, known: set[bytes], bad: dict[bytes, str], report: CheckReport
) -> None:
    # A chunk is lost only if no intact copy exists: drop ids that are also in a good pack.
    for manifest_id in repo.list_manifest_ids():
        report.manifests += 1
        try:
            m = repo.load_manifest(manifest_id)
        except CorruptObject as exc:
            report.problems.append(str(exc))
            report.affected_points.append(f"{manifest_id} (unreadable manifest)")
            report.damage.append(
                PointDamage(manifest_id, "", "", (manifest_key(manifest_id),), exc.reason)
            )
            continue
        missing: defaultdict[str, int] = defaultdict(int)
        blamed: set[str] = set()
        for cid in m.referenced():
            if cid not in known:
                missing["missing"] += 1
                blamed.add(f"chunk {cid.hex()[:16]} (in no index)")
            elif cid in bad:
                missing["damaged"] += 1
                blamed.add(bad[cid])
        if missing:
            what = ", ".join(f"{n} {k}" for k, n in sorted(missing.items()))
            report.problems.append(
                f"manifest {manifest_id} ({m.volume}@{m.point_id}): {what} chunk(s)"
            )
            report.affected_points.append(f"{manifest_id} ({m.volume}@{m.point_id})")
            report.damage.append(
                PointDamage(manifest_id, m.volume, m.point_id, tuple(sorted(blamed)), what)
            )


__all__ = ["CheckReport", "check", "index_key"]
