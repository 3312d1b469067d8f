"""Property: any sequence of backups, duplicate uploads and prunes (with any retention
and repack threshold) leaves a repository that checks clean and restores every
remaining point bit-for-bit."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.datamover.sources import BytesSource

from haven.datamover import Repository, RetentionPolicy, backup_volume, check, prune
from haven.datamover import restore_volume as restore
from haven.datamover.backends import MemoryBackend
from haven.datamover.packs import PackBuilder, pack_key

CHUNK = 64 * 1024
POOL = [os.urandom(CHUNK) for _ in range(6)] + [bytes(CHUNK)]


def _duplicate_some(repo: Repository, n: int) -> None:
    """Store copies of existing chunk blobs in a new pack (as racing writers would)."""
    repo.reload_index()
    builder = PackBuilder(repo.keys, 10 * CHUNK)
    for cid, loc in list(repo.index.locations.items())[:n]:
        blob = repo.backend.get_range(pack_key(loc.pack_id), loc.offset, loc.length)
        builder.add(cid, blob)
    sealed = builder.flush()
    if sealed is not None:
        repo.upload_pack(sealed)


backup_op = st.tuples(
    st.just("backup"),
    st.integers(0, 2),
    st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=5),
)
dup_op = st.tuples(st.just("dup"), st.integers(1, 4), st.just([0]))
prune_op = st.tuples(st.just("prune"), st.integers(0, 3), st.sampled_from([[0], [50], [90]]))
ops = st.lists(st.one_of(backup_op, dup_op, prune_op), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_any_history_keeps_remaining_points_intact(
    history: list[tuple[str, int, list[int]]],
) -> None:
    backend = MemoryBackend()
    repo = Repository.init(
        backend, master_key=os.urandom(32), chunk_size=CHUNK, pack_size=3 * CHUNK
    )
    expected: dict[str, bytes] = {}
    for op, arg, extra in history:
        if op == "backup":
            data = b"".join(POOL[i] for i in extra)
            res = backup_volume(repo, BytesSource(data), volume=f"v{arg}", workers=2)
            expected[res.manifest.manifest_id] = data
        elif op == "dup":
            _duplicate_some(repo, arg)
        else:
            policy = RetentionPolicy(keep_last=arg) if arg else None
            prune(repo, policy, repack_threshold=extra[0] / 100)
    report = check(repo, read_data=True)
    assert report.ok, report.problems
    with tempfile.TemporaryDirectory() as tmp:
        for m in repo.manifests():
            out = Path(tmp) / m.manifest_id
            restore(repo, m, out)
            assert out.read_bytes() == expected[m.manifest_id]
