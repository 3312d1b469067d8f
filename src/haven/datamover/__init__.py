"""haven.datamover: block-level, incremental, deduplicated, compressed, encrypted backups.

Public API (stable names; everything else is internal)::

    from haven.datamover import (
        Repository, open_backend, FileSource, FileTarget,
        backup_volume, restore_volume, check, prune, RetentionPolicy,
    )

    backend = open_backend("/srv/haven-repo")        # or "swift://container/prefix"
    repo = Repository.init(backend, password="...")   # once; or master_key=<key file>
    repo = Repository.open(backend, password="...")   # WrongKey (exit 7) if wrong

    with FileSource("/dev/vg/vol1") as src:          # any BlockSource (size, readinto)
        result = backup_volume(repo, src, volume="vol1", point_id="rp-42",
                               parent=None, changed=None, progress=callback)
    result.manifest.manifest_id, result.stats.bytes_uploaded

    # incremental with changed-block tracking (list of haven.domain.extents.Extent):
    backup_volume(repo, src, volume="vol1", parent=prev.manifest_id, changed=extents)

    restore_volume(repo, manifest_id_or_ref, "/dev/vg/vol1-copy", into_existing=True)
    report = check(repo, read_data=True); report.raise_for_problems()
    prune(repo, RetentionPolicy(keep_last=3, keep_daily=7))  # or forget_ids=[manifest ids]
    repair(repo, read_data=True)   # rebuild indexes, salvage packs, say what was saved

A point exists when the repository's newest head records its manifest (see
:mod:`haven.datamover.heads`); pass ``state_dir`` to ``open`` so this host notices a
repository that went back in time.

Manifests: ``repo.manifests(volume=None)``, ``repo.latest(volume)``,
``repo.find_manifest("vol1@rp-42")``, ``repo.delete_manifest(id)`` (data goes at the next
prune). Progress callbacks receive :class:`Progress`. Sources implement
:class:`BlockSource` (``size``, ``readinto(offset, buf)``), optionally
:class:`AllocationMap`; restore targets are paths or :class:`BlockTarget` objects.
All errors derive from :mod:`haven.domain.errors` (see :mod:`haven.datamover.errors`).
Thread-safety: one ``Repository`` may be shared by threads; backup/restore/prune take
repository locks themselves, so separate processes can run them concurrently.
"""

from __future__ import annotations

from haven.datamover.backends import credential_names, open_backend
from haven.datamover.backup import BackupResult, BackupStats, backup_volume
from haven.datamover.blockio import AllocationMap, BlockSource, BlockTarget, FileSource, FileTarget
from haven.datamover.check import CheckReport, check
from haven.datamover.crypto import ScryptParams, decode_key_file, encode_key_file, new_master_key
from haven.datamover.locks import LockKind, LockPolicy
from haven.datamover.manifest import VolumeManifest
from haven.datamover.progress import Progress, ProgressCallback
from haven.datamover.prune import PruneStats, prune
from haven.datamover.repair import PointSalvage, RepairReport, Salvage, repair
from haven.datamover.repository import RepoConfig, Repository
from haven.datamover.restore import RestoreStats, restore_volume
from haven.datamover.retention import PointTime, RetentionPolicy, select_keep
from haven.datamover.stats import RepoStats, repo_stats

__all__ = [
    "AllocationMap",
    "BackupResult",
    "BackupStats",
    "BlockSource",
    "BlockTarget",
    "CheckReport",
    "FileSource",
    "FileTarget",
    "LockKind",
    "LockPolicy",
    "PointSalvage",
    "PointTime",
    "Progress",
    "ProgressCallback",
    "PruneStats",
    "RepairReport",
    "RepoConfig",
    "RepoStats",
    "Repository",
    "RestoreStats",
    "RetentionPolicy",
    "Salvage",
    "ScryptParams",
    "VolumeManifest",
    "backup_volume",
    "check",
    "credential_names",
    "decode_key_file",
    "encode_key_file",
    "new_master_key",
    "open_backend",
    "prune",
    "repair",
    "repo_stats",
    "restore_volume",
    "select_keep",
]
