"""Cinder-backup refs: self-contained, round-trip exactly, damage is named."""

from __future__ import annotations

import pytest

from haven.domain.points import VolumePoint
from haven.sites.errors import SiteInputError
from haven.sites.openstack import backups, nativecopy


def _vb() -> backups.VolumeBackup:
    full = backups.BackupRecord("b1", None, "cinder.backup.drivers.posix", "dXJs", 1, False)
    incr = backups.BackupRecord("b2", "b1", "cinder.backup.drivers.posix", "dXJsMg==", 1, True)
    return backups.VolumeBackup("v1", "db-boot", "b2", (full, incr))


def test_ref_round_trips_and_marks_the_volume_point_native() -> None:
    ref = nativecopy.to_ref(_vb())
    assert nativecopy.from_ref(ref) == _vb()
    assert VolumePoint("db", "vda", 1 << 30, ref).native
    assert not VolumePoint("db", "vda", 1 << 30, "mf-123").native


@pytest.mark.parametrize("ref", ["mf-123", "native:cinder-backup:{", "native:cinder-backup:{}"])
def test_damaged_or_foreign_refs_are_named(ref: str) -> None:
    with pytest.raises(SiteInputError, match=r"point\.volumes\.manifest"):
        nativecopy.from_ref(ref)
