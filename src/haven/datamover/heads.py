"""The repository's signed, monotonic record of its points ("heads").

A manifest object alone does not make a point: a point exists when the newest *head*
lists its manifest. ``heads/<seq>`` (16 decimal digits) is a meta-sealed, zstd-compressed
JSON document ``{version, seq, created, manifests: [[manifest_id, volume, point_id],
...]}``; the AD binds it to its sequence number (``b"HVNH" || version || u64le(seq)``)
and the meta key binds it to the repository, so a head cannot be renamed to another
sequence number nor carried over from another repository.

What this gives (see docs/repository-format.md, "Heads"):
- Deleting a point's manifest is noticed: the newest head still lists it.
- A manifest that no head lists is not a point: one left by a writer that crashed
  between its manifest and its head, or put there from elsewhere. It is never shown
  and the next prune deletes it.
- Rolling the whole repository back (deleting the newest manifests *and* heads) is
  noticed by the host that saw the newer head: :class:`HighWaterMark` remembers, per
  repository id, the highest sequence number and digest this host has seen.

Writers serialise on the REGISTER lock (or hold the EXCLUSIVE one): read the newest
head, write ``seq + 1`` with the change, then delete heads older than ``KEEP`` behind.
Keeping a few lets a reader fall back when the newest head is damaged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import zstandard

from haven.datamover.backends.base import Backend, ObjectNotFound
from haven.datamover.crypto import FORMAT_VERSION, KeyRing
from haven.datamover.errors import CorruptObject

HEAD_PREFIX = "heads/"
KEEP = 4
# A head lists every live manifest (~80 bytes each): 64 MiB is ~800,000 points.
MAX_HEAD_PLAIN = 64 << 20
_SEQ_DIGITS = 16


@dataclass(frozen=True, slots=True)
class HeadEntry:
    manifest_id: str
    volume: str
    point_id: str


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    created: datetime
    entries: tuple[HeadEntry, ...]
    digest: str = ""  # keyed hash of the plaintext: identifies this exact head

    def ids(self) -> set[str]:
        return {e.manifest_id for e in self.entries}


def head_key(seq: int) -> str:
    return f"{HEAD_PREFIX}{seq:0{_SEQ_DIGITS}d}"


def seq_of_key(key: str) -> int | None:
    name = key[len(HEAD_PREFIX) :]
    if len(name) != _SEQ_DIGITS or not name.isdigit():
        return None
    return int(name)


def _ad(seq: int) -> bytes:
    return b"HVNH" + bytes((FORMAT_VERSION,)) + struct.pack("<Q", seq)


def seal_head(keys: KeyRing, seq: int, entries: Iterable[HeadEntry]) -> tuple[bytes, Head]:
    created = datetime.now(UTC)
    rows = sorted([e.manifest_id, e.volume, e.point_id] for e in entries)
    doc = {"version": FORMAT_VERSION, "seq": seq, "created": created.isoformat(), "manifests": rows}
    plain = json.dumps(doc, sort_keys=True).encode()
    head = Head(seq, created, tuple(HeadEntry(*r) for r in rows), keys.chunk_id(plain).hex())
    return keys.seal_meta(zstandard.ZstdCompressor(level=3).compress(plain), _ad(seq)), head


def open_head(keys: KeyRing, seq: int, blob: bytes) -> Head:
    where = head_key(seq)
    raw = keys.open_meta(blob, _ad(seq), where)
    plain = bounded_decompress(raw, MAX_HEAD_PLAIN, where)
    try:
        doc = json.loads(plain)
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise ValueError("not a version 2 head")
        if doc.get("seq") != seq:
            raise ValueError("sequence number does not match the object name")
        created = datetime.fromisoformat(doc["created"]).astimezone(UTC)
        entries = []
        for row in doc["manifests"]:
            if not (
                isinstance(row, list) and len(row) == 3 and all(isinstance(v, str) for v in row)
            ):
                raise ValueError("malformed entry")
            entries.append(HeadEntry(*row))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CorruptObject(where, f"undecodable head ({type(exc).__name__}: {exc})") from None
    return Head(seq, created, tuple(entries), keys.chunk_id(plain).hex())


def bounded_decompress(raw: bytes, limit: int, where: str) -> bytes:
    """zstd-decompress at most ``limit`` bytes (a crafted frame may claim any size)."""
    try:
        with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=False) as r:
            out = r.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise CorruptObject(where, f"zstd: {exc}") from None
    if len(out) > limit:
        raise CorruptObject(where, f"decompresses to more than {limit} bytes")
    return out


@dataclass(slots=True)
class RegisterView:
    """What the heads say: the newest readable head and every problem met on the way.
    ``fallback`` is True when the newest head object was unreadable (or none exists)
    and an older one (or nothing) had to be used."""

    head: Head | None
    newest_seq: int | None  # highest sequence number present, readable or not
    problems: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # keys of unreadable heads
    fallback: bool = False
    rollback: str | None = None  # why the heads are behind what this host saw


def list_head_seqs(backend: Backend) -> list[int]:
    seqs = [seq_of_key(i.key) for i in backend.list(HEAD_PREFIX)]
    return sorted(s for s in seqs if s is not None)


def read_register(backend: Backend, keys: KeyRing, max_bytes: int) -> RegisterView:
    seqs = list_head_seqs(backend)
    view = RegisterView(None, seqs[-1] if seqs else None)
    for seq in reversed(seqs):
        key = head_key(seq)
        try:
            blob = backend.get_range(key, 0, max_bytes + 1)
            if len(blob) > max_bytes:
                raise CorruptObject(key, f"larger than {max_bytes} bytes")
            view.head = open_head(keys, seq, blob)
            break
        except ObjectNotFound:  # deleted by a writer keeping only the newest ones
            continue
        except CorruptObject as exc:
            view.problems.append(str(exc))
            view.damaged.append(key)
            view.fallback = True
    if view.head is None:
        view.fallback = True
        view.problems.append(
            "no readable head: the repository's record of its points is gone "
            "(every manifest found is listed, unverified)"
        )
    return view


class HighWaterMark:
    """Per repository id, the newest head this host has seen (``<dir>/<repo_id>.json``,
    0600). Its only job is to notice a repository that went back in time."""

    def __init__(self, directory: Path, repo_id: str) -> None:
        self.path = directory / f"{repo_id}.json"

    def read(self) -> tuple[int, str] | None:
        try:
            doc = json.loads(self.path.read_text())
            return int(doc["seq"]), str(doc["digest"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable local memory is no evidence either way

    def check(self, view: RegisterView) -> str | None:
        """Why the repository's heads are behind what this host saw, or None. A newest
        head that is present but unreadable is damage (reported as such), not rollback."""
        seen = self.read()
        if seen is None:
            return None
        seq, digest = seen
        present = view.newest_seq if view.newest_seq is not None else -1
        if present < seq:
            return (
                f"the repository's newest head is {present} but this host saw head {seq}: "
                "points were deleted or the repository was rolled back"
            )
        head = view.head
        if head is not None and head.seq == seq and head.digest != digest:
            return f"head {seq} differs from the one this host saw: the record was replaced"
        return None

    def forget(self) -> None:
        """Drop what was seen (an operator accepted the repository's state as it is)."""
        self.path.unlink(missing_ok=True)

    def advance(self, head: Head) -> None:
        """Remember ``head`` if it is newer than what was seen (atomic, locked)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked():
            seen = self.read()
            if seen is not None and seen[0] >= head.seq:
                return
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"seq": head.seq, "digest": head.digest}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
