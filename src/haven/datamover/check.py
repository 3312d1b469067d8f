"""Repository check: structure, references, the record of points and (optionally) every
object's tag.

:func:`check` never raises for problems it finds; it returns a :class:`CheckReport`
naming every problem, every damaged object (``damaged_objects``: what prune refuses to
work around unless told to forget it) and every recovery point (manifest) whose data is
damaged or unreachable. Callers (the CLI) turn a non-clean report into
:class:`RepositoryCheckFailed` (exit code 6).

Levels: structure (config; the heads: the newest is readable and not behind what this
host saw; every recorded manifest exists, decrypts and parses; every index decrypts;
every pack named by an index exists and is long enough; every chunk a recorded
manifest references is in an index whose pack is intact) and, with ``read_data``, every
pack is read, its trailer is compared with its index and every chunk blob is
authenticated, decompressed and hash-checked. A chunk counts as lost only if no intact
copy of it exists. Packs without an index and manifests no head records (left by an
interrupted writer) are warnings: no point needs them.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from haven.datamover.backends.base import ObjectNotFound
from haven.datamover.codec import decode_chunk
from haven.datamover.errors import CorruptObject, ManifestNotFound, RepositoryCheckFailed
from haven.datamover.manifest import VolumeManifest, manifest_key
from haven.datamover.packs import (
    INDEX_PREFIX,
    MAX_INDEX_BYTES,
    PACK_PREFIX,
    PackEntry,
    index_key,
    open_index,
    open_trailer,
    pack_id_of_key,
    pack_key,
)
from haven.datamover.progress import ProgressCallback, ProgressMeter
from haven.datamover.repository import Repository, read_bounded


@dataclass(frozen=True, slots=True)
class PointDamage:
    """One recovery point (volume manifest) whose data is damaged or unreachable, with
    the objects to blame (``data/..``, ``index/..``, ``manifests/..``, ``heads/..``)."""

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
    damaged_objects: set[str] = field(default_factory=set)  # keys of the objects found bad
    head_seq: int | None = None  # the newest readable head's sequence number

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise RepositoryCheckFailed(self.problems, self.affected_points)

    def _bad(self, key: str, problem: str) -> None:
        self.damaged_objects.add(key)
        self.problems.append(problem)


def check(
    repo: Repository,
    *,
    read_data: bool = False,
    progress: ProgressCallback | None = None,
    workers: int = 4,
) -> CheckReport:
    report = CheckReport()
    pack_sizes = {pack_id_of_key(i.key): i.size for i in repo.backend.list(PACK_PREFIX)}
    indexes = _read_indexes(repo, report)
    good: set[bytes] = set()  # chunk ids with at least one intact copy
    suspect: dict[bytes, str] = {}  # chunk id -> a damaged object holding it
    for pack_id, entries in indexes.items():
        size = pack_sizes.get(pack_id)
        ids = {e.chunk_id for e in entries}
        if size is None:
            report._bad(pack_key(pack_id), f"pack {pack_id} is missing ({len(entries)} chunks)")
        elif entries and max(e.offset + e.length for e in entries) > size:
            report._bad(pack_key(pack_id), f"pack {pack_id} is truncated")
        else:
            good |= ids
            continue
        suspect.update(dict.fromkeys(ids, pack_key(pack_id)))
    for pack_id in sorted(pack_sizes.keys() - indexes.keys()):
        report.warnings.append(
            f"pack {pack_id} has no readable index (left by an interrupted writer, or its "
            "index is damaged: haven repo repair rebuilds it from the pack's trailer)"
        )
    report.packs = len(indexes)
    report.chunks = len(good)
    if read_data:
        _read_packs(repo, indexes, pack_sizes, report, good, suspect, progress, workers)
    _check_points(repo, good, suspect, report)
    return report


def _read_indexes(repo: Repository, report: CheckReport) -> dict[str, list[PackEntry]]:
    indexes: dict[str, list[PackEntry]] = {}
    for info in repo.backend.list(INDEX_PREFIX):
        pack_id = info.key[len(INDEX_PREFIX) :]
        try:
            blob = read_bounded(repo.backend, info.key, MAX_INDEX_BYTES)
            indexes[pack_id] = open_index(repo.keys, pack_id, blob)
        except ObjectNotFound:
            continue
        except CorruptObject as exc:
            report._bad(info.key, f"index {pack_id}: {exc}")
    return indexes


def _read_packs(
    repo: Repository,
    indexes: dict[str, list[PackEntry]],
    pack_sizes: dict[str, int],
    report: CheckReport,
    good: set[bytes],
    suspect: dict[bytes, str],
    progress: ProgressCallback | None,
    workers: int,
) -> None:
    present = [p for p in indexes if p in pack_sizes]
    meter = ProgressMeter("check", sum(pack_sizes[p] for p in present), progress)

    def verify(pack_id: str) -> tuple[list[str], set[bytes], set[bytes]]:
        problems: list[str] = []
        damaged: set[bytes] = set()
        key = pack_key(pack_id)
        try:
            data = repo.backend.get(key)
        except ObjectNotFound:
            ids = {e.chunk_id for e in indexes[pack_id]}
            return [f"pack {pack_id} vanished during check"], ids, set()
        try:
            trailer = open_trailer(repo.keys, pack_id, data)
            if sorted(trailer, key=lambda e: e.offset) != sorted(
                indexes[pack_id], key=lambda e: e.offset
            ):
                problems.append(f"pack {pack_id}: trailer does not match its index")
        except CorruptObject as exc:
            problems.append(str(exc))
        view = memoryview(data)
        intact: set[bytes] = set()
        for e in indexes[pack_id]:
            try:
                decode_chunk(repo.keys, e.chunk_id, view[e.offset : e.offset + e.length], key)
                intact.add(e.chunk_id)
            except CorruptObject as exc:
                problems.append(f"{exc} (chunk {e.chunk_id.hex()[:16]} at offset {e.offset})")
                damaged.add(e.chunk_id)
        meter.add(len(data))
        return problems, damaged, intact

    verified: set[bytes] = set()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for pack_id, (problems, damaged, intact) in zip(
            present, pool.map(verify, present), strict=True
        ):
            if problems:
                report.damaged_objects.add(pack_key(pack_id))
                report.problems.extend(problems)
            suspect.update(dict.fromkeys(damaged - suspect.keys(), pack_key(pack_id)))
            verified |= intact
    # with every pack read, a chunk is good only if some copy of it verified
    good.intersection_update(verified)
    report.chunks = len(good)
    report.bytes_read = meter.done
    meter.finish()


def _check_points(
    repo: Repository, good: set[bytes], suspect: dict[bytes, str], report: CheckReport
) -> None:
    """The heads, then every recorded point's manifest and the chunks it needs."""
    view = repo.register()
    for key in view.damaged:
        report.damaged_objects.add(key)
    if view.rollback:
        report.damaged_objects.add("heads/")
    report.problems.extend(view.problems)
    report.head_seq = view.head.seq if view.head is not None else None
    entries = repo._live_entries(None)  # (with the fallback listing if heads are damaged)
    recorded = {e.manifest_id for e in entries}
    for mid in repo.present_manifest_ids():
        if mid not in recorded:
            report.warnings.append(
                f"manifest {mid} is not recorded in the repository's head: left by an "
                "interrupted backup or put there from elsewhere; it is not a point and the "
                "next prune deletes it"
            )
    for e in sorted(entries, key=lambda e: e.manifest_id):
        report.manifests += 1
        where = manifest_key(e.manifest_id)
        label = f"{e.manifest_id} ({e.volume}@{e.point_id})"
        try:
            m = repo.load_manifest(e.manifest_id)
        except (CorruptObject, ManifestNotFound) as exc:
            reason = exc.reason if isinstance(exc, CorruptObject) else "recorded but missing"
            report._bad(where, f"manifest {label}: {reason}")
            report.affected_points.append(label)
            report.damage.append(PointDamage(e.manifest_id, e.volume, e.point_id, (where,), reason))
            continue
        _check_chunks(m, good, suspect, report)


def _check_chunks(
    m: VolumeManifest, good: set[bytes], suspect: dict[bytes, str], report: CheckReport
) -> None:
    missing: defaultdict[str, int] = defaultdict(int)
    blamed: set[str] = set()
    for cid in m.referenced():
        if cid in good:
            continue
        if cid in suspect:
            missing["damaged"] += 1
            blamed.add(suspect[cid])
        else:
            missing["missing"] += 1
            blamed.add(f"chunk {cid.hex()[:16]} (in no readable index)")
    if not missing:
        return
    what = ", ".join(f"{n} {k}" for k, n in sorted(missing.items())) + " chunk(s)"
    label = f"{m.manifest_id} ({m.volume}@{m.point_id})"
    report.problems.append(f"manifest {label}: {what}")
    report.affected_points.append(label)
    report.damage.append(
        PointDamage(m.manifest_id, m.volume, m.point_id, tuple(sorted(blamed)), what)
    )


__all__ = ["CheckReport", "PointDamage", "check", "index_key"]
