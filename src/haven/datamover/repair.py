"""Repository repair: rebuild what can be rebuilt, quarantine what is bad, say what was saved.

:func:`repair` runs under the EXCLUSIVE lock and, in this order:

1. **Packs and indexes.** Every pack is self-describing (its sealed trailer lists its
   entries), so a missing or damaged ``index/<id>`` is rebuilt from the trailer. A pack
   whose trailer is unreadable (truncated, damaged) but whose index is intact is salvaged:
   every blob still inside the object that authenticates is copied into a new pack (pack,
   then index), then the old one is quarantined. With ``read_data`` every blob of every
   pack is verified and packs holding bad blobs are salvaged the same way. A pack with
   neither a readable index nor a readable trailer cannot be parsed (blobs do not carry
   their length): it is quarantined and its chunks are lost. An index whose pack is gone
   is quarantined.
2. **Manifests and heads.** A recorded manifest that is unreadable is quarantined and a
   missing one noted; both points are *lost* and leave the record. Damaged heads are
   quarantined and a new head is written from what readers see. A rollback (the record
   is behind what this host saw) is only accepted with ``accept_rollback``.
3. **The verdict.** For every point left: *intact* (every chunk it needs is in an intact
   pack), *partial* (some chunks lost: ``haven repo prune --forget-damaged`` can forget it)
   or *lost*.

Quarantined objects move to ``quarantine/<original key>`` (copied, then deleted): nothing
repair touches is destroyed outright. Every write precedes the deletion it replaces, so a
crash leaves at worst duplicates, never less than before. ``dry_run`` only reports.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import StrEnum

from haven.datamover.backends.base import ObjectNotFound
from haven.datamover.codec import decode_chunk
from haven.datamover.errors import CorruptObject, ManifestNotFound
from haven.datamover.locks import LockKind
from haven.datamover.manifest import VolumeManifest, manifest_key
from haven.datamover.packs import (
    INDEX_PREFIX,
    MAX_INDEX_BYTES,
    PACK_MAGIC,
    PACK_PREFIX,
    PackBuilder,
    PackEntry,
    index_key,
    open_index,
    open_trailer,
    pack_id_of_key,
    pack_key,
    seal_index,
)
from haven.datamover.repository import Repository, read_bounded

QUARANTINE_PREFIX = "quarantine/"


class Salvage(StrEnum):
    """What a recovery point (one volume manifest) is worth after repair."""

    INTACT = "intact"  # every chunk readable: fully restorable
    PARTIAL = "partial"  # some chunks lost: restorable only with holes
    LOST = "lost"  # manifest unreadable or missing: nothing restorable


@dataclass(frozen=True, slots=True)
class PointSalvage:
    manifest_id: str
    volume: str
    point_id: str
    salvage: Salvage
    chunks_total: int
    chunks_lost: int
    objects: tuple[str, ...] = ()  # the damaged objects it needed


@dataclass(slots=True)
class RepairReport:
    dry_run: bool
    actions: list[str] = field(default_factory=list)  # what was (or would be) done
    unsaved: list[str] = field(default_factory=list)  # damage repair could not undo
    quarantined: list[str] = field(default_factory=list)  # object keys moved aside
    points: list[PointSalvage] = field(default_factory=list)
    chunks_salvaged: int = 0  # blobs copied out of damaged packs

    def count(self, salvage: Salvage) -> int:
        return sum(1 for p in self.points if p.salvage is salvage)


def repair(
    repo: Repository,
    *,
    read_data: bool = False,
    dry_run: bool = False,
    accept_rollback: bool = False,
) -> RepairReport:
    report = RepairReport(dry_run=dry_run)
    with repo.lock(LockKind.EXCLUSIVE):
        fixer = _Fixer(repo, report)
        lost_chunks = fixer.packs(read_data)
        repo.reload_index()
        lost_points = fixer.record(accept_rollback)
        if not dry_run:
            repo.reload_index()
        _verdict(repo, report, fixer.good, lost_chunks, lost_points)
    return report


@dataclass
class _Fixer:
    repo: Repository
    report: RepairReport
    good: set[bytes] = field(default_factory=set)

    # -- packs and indexes -----------------------------------------------------------
    def packs(self, read_data: bool) -> dict[bytes, str]:
        """Fix every pack/index pair; returns lost chunk ids -> the object to blame
        (only chunks with no intact copy anywhere count). Sets :attr:`good`: the chunk
        ids readable once repair is done (also in a dry run, where nothing is written)."""
        sizes = {pack_id_of_key(i.key): i.size for i in self.repo.backend.list(PACK_PREFIX)}
        index_ids = [i.key[len(INDEX_PREFIX) :] for i in self.repo.backend.list(INDEX_PREFIX)]
        good: set[bytes] = set()
        lost: dict[bytes, str] = {}
        for pack_id in sorted(set(sizes) | set(index_ids)):
            saved, gone = self._pack(pack_id, sizes.get(pack_id), pack_id in index_ids, read_data)
            good |= saved
            for cid in gone:
                lost.setdefault(cid, pack_key(pack_id))
        self.good = good
        return {cid: key for cid, key in lost.items() if cid not in good}

    def _pack(
        self, pack_id: str, size: int | None, has_index: bool, read_data: bool
    ) -> tuple[set[bytes], set[bytes]]:
        """(chunk ids readable after repair, chunk ids lost) for one pack."""
        index = self._index(pack_id) if has_index else None
        if size is None:  # the index describes a pack that is gone
            entries: list[PackEntry] = index or []
            self._quarantine(index_key(pack_id), f"its pack {pack_id} is missing")
            if entries:
                self.report.unsaved.append(
                    f"pack {pack_id} is missing: {len(entries)} chunk(s) lost"
                )
            return set(), {e.chunk_id for e in entries}
        data = self._read(pack_key(pack_id)) if read_data else None
        trailer = self._trailer(pack_id, size, data)
        if trailer is None and index is None:
            self._quarantine(pack_key(pack_id), "neither its index nor its trailer is readable")
            self.report.unsaved.append(f"pack {pack_id}: unparseable, its chunks are lost")
            return set(), set()
        if trailer is not None and (index is None or not _same(trailer, index)):
            # the trailer was sealed with the pack itself: it is the authority
            if index is not None:
                self._quarantine(
                    index_key(pack_id), "disagrees with its pack's trailer", quiet=True
                )
            self._rebuild_index(pack_id, trailer, had_index=has_index)
        entries = trailer if trailer is not None else (index or [])
        if trailer is not None and not read_data:
            return {e.chunk_id for e in entries}, set()
        if data is None:
            data = self._read(pack_key(pack_id))
        ok, bad = _verify(self.repo, pack_id, data, entries)
        if bad or trailer is None:  # rewrite: drop bad blobs, or give it a sound trailer
            self._salvage(pack_id, data, ok, bad)
        return {e.chunk_id for e in ok}, {e.chunk_id for e in bad}

    def _index(self, pack_id: str) -> list[PackEntry] | None:
        key = index_key(pack_id)
        try:
            return open_index(
                self.repo.keys, pack_id, read_bounded(self.repo.backend, key, MAX_INDEX_BYTES)
            )
        except ObjectNotFound:
            return None
        except CorruptObject as exc:
            self._quarantine(key, f"damaged ({exc.reason})")
            return None

    def _read(self, key: str) -> bytes:
        try:
            return self.repo.backend.get(key)
        except ObjectNotFound:
            return b""

    def _trailer(self, pack_id: str, size: int, data: bytes | None) -> list[PackEntry] | None:
        try:
            if data is not None:
                return open_trailer(self.repo.keys, pack_id, data)
            if size < len(PACK_MAGIC) + 4:
                return None
            (tlen,) = struct.unpack(
                "<I", self.repo.backend.get_range(pack_key(pack_id), size - 4, 4)
            )
            if tlen > size - len(PACK_MAGIC) - 4:
                return None
            tail = self.repo.backend.get_range(pack_key(pack_id), size - 4 - tlen, tlen + 4)
            return open_trailer(self.repo.keys, pack_id, PACK_MAGIC + tail)
        except (CorruptObject, ObjectNotFound, struct.error):
            return None

    def _rebuild_index(self, pack_id: str, entries: list[PackEntry], had_index: bool) -> None:
        why = "damaged" if had_index else "missing"
        self.report.actions.append(f"rebuilt index/{pack_id} ({why}) from the pack's trailer")
        if not self.report.dry_run:
            self.repo.backend.put(index_key(pack_id), seal_index(self.repo.keys, pack_id, entries))

    def _salvage(
        self, pack_id: str, data: bytes, ok: list[PackEntry], bad: list[PackEntry]
    ) -> None:
        self.report.actions.append(
            f"salvaged {len(ok)} chunk(s) of pack {pack_id} into a new pack"
            + (f"; {len(bad)} damaged or cut off" if bad else "")
        )
        if bad:
            self.report.unsaved.append(f"pack {pack_id}: {len(bad)} chunk(s) unreadable")
        self.report.chunks_salvaged += len(ok)
        if not self.report.dry_run and ok:
            builder = PackBuilder(self.repo.keys, self.repo.config.pack_size)
            for e in ok:
                sealed = builder.add(e.chunk_id, data[e.offset : e.offset + e.length])
                if sealed is not None:
                    self.repo.upload_pack(sealed)
            tail = builder.flush()
            if tail is not None:
                self.repo.upload_pack(tail)
        self._quarantine(index_key(pack_id), "replaced by the salvaged pack", quiet=True)
        self._quarantine(pack_key(pack_id), "damaged (its good chunks were salvaged)")

    def _quarantine(self, key: str, why: str, quiet: bool = False) -> None:
        if not self.report.dry_run:
            try:
                blob = self.repo.backend.get(key)
            except ObjectNotFound:
                return
            self.repo.backend.put(QUARANTINE_PREFIX + key, blob)
            self.repo.backend.delete(key)
        self.report.quarantined.append(key)
        if not quiet:
            self.report.actions.append(f"quarantined {key}: {why}")

    # -- manifests and heads -------------------------------------------------------------
    def record(self, accept_rollback: bool) -> dict[str, str]:
        """Fix the record of points; returns manifest id -> why it is lost."""
        view = self.repo.register()
        if view.rollback and not accept_rollback:
            self.report.unsaved.append(
                f"{view.rollback}; repair leaves the record as it is (accept the repository's "
                "state with --accept-rollback)"
            )
        for key in view.damaged:
            self._quarantine(key, "damaged head")
        entries = self.repo._live_entries(None)
        lost: dict[str, str] = {}
        for e in entries:
            try:
                self.repo.load_manifest(e.manifest_id)
            except ManifestNotFound:
                lost[e.manifest_id] = "its manifest is missing (deleted or rolled back)"
            except CorruptObject as exc:
                lost[e.manifest_id] = f"its manifest is damaged ({exc.reason})"
                self._quarantine(manifest_key(e.manifest_id), "damaged manifest")
        for mid, why in sorted(lost.items()):
            self.report.unsaved.append(f"point {mid}: {why}")
        rewrite = bool(lost) or view.fallback or (view.rollback is not None and accept_rollback)
        if rewrite:
            self.report.actions.append(
                "wrote a new head recording the points that are left"
                + (" (rollback accepted)" if view.rollback else "")
            )
            if not self.report.dry_run:
                if view.rollback and self.repo.high_water is not None:
                    self.repo.high_water.forget()
                live = {e.manifest_id: e for e in entries if e.manifest_id not in lost}
                seq = (view.newest_seq if view.newest_seq is not None else -1) + 1
                self.repo._write_head(seq, live.values())
        return lost


def _same(a: list[PackEntry], b: list[PackEntry]) -> bool:
    return sorted(a, key=lambda e: e.offset) == sorted(b, key=lambda e: e.offset)


def _verify(
    repo: Repository, pack_id: str, data: bytes, entries: list[PackEntry]
) -> tuple[list[PackEntry], list[PackEntry]]:
    ok: list[PackEntry] = []
    bad: list[PackEntry] = []
    view = memoryview(data)
    for e in sorted(entries, key=lambda e: e.offset):
        if e.offset + e.length > len(data):
            bad.append(e)
            continue
        try:
            decode_chunk(
                repo.keys, e.chunk_id, view[e.offset : e.offset + e.length], pack_key(pack_id)
            )
            ok.append(e)
        except CorruptObject:
            bad.append(e)
    return ok, bad


def _verdict(
    repo: Repository,
    report: RepairReport,
    good: set[bytes],
    lost_chunks: dict[bytes, str],
    lost: dict[str, str],
) -> None:
    for m in repo.manifests():
        if m.manifest_id not in lost:
            report.points.append(_salvage_of(m, good, lost_chunks))
    for mid in sorted(lost):
        report.points.append(PointSalvage(mid, "", "", Salvage.LOST, 0, 0, (manifest_key(mid),)))


def _salvage_of(m: VolumeManifest, good: set[bytes], lost_chunks: dict[bytes, str]) -> PointSalvage:
    needed = m.referenced()
    missing = needed - good
    blamed = sorted({lost_chunks.get(c, "chunk in no index") for c in missing})
    verdict = Salvage.PARTIAL if missing else Salvage.INTACT
    return PointSalvage(
        m.manifest_id, m.volume, m.point_id, verdict, len(needed), len(missing), tuple(blamed)
    )
