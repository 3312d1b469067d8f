"""Repository statistics (``haven repo stats``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from haven.datamover.manifest import MANIFEST_PREFIX
from haven.datamover.packs import INDEX_PREFIX, PACK_PREFIX
from haven.datamover.repository import Repository


@dataclass(frozen=True, slots=True)
class VolumeStats:
    volume: str
    points: int
    latest: str  # manifest id
    size: int


@dataclass(frozen=True, slots=True)
class RepoStats:
    location: str
    repo_id: str
    format_version: int
    chunk_size: int
    pack_size: int
    packs: int
    pack_bytes: int
    index_bytes: int
    manifest_bytes: int
    unique_chunks: int
    manifests: int
    logical_bytes: int  # sum of volume sizes over all manifests
    volumes: list[VolumeStats] = field(default_factory=list)


def repo_stats(repo: Repository) -> RepoStats:
    def total(prefix: str) -> tuple[int, int]:
        infos = list(repo.backend.list(prefix))
        return len(infos), sum(i.size for i in infos)

    packs, pack_bytes = total(PACK_PREFIX)
    _, index_bytes = total(INDEX_PREFIX)
    _, manifest_bytes = total(MANIFEST_PREFIX)
    manifests = repo.manifests()
    per: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for m in manifests:
        per.setdefault(m.volume, []).append(m.manifest_id)
        sizes[m.volume] = m.size
    return RepoStats(
        location=repo.backend.describe(),
        repo_id=repo.config.repo_id,
        format_version=repo.config.version,
        chunk_size=repo.config.chunk_size,
        pack_size=repo.config.pack_size,
        packs=packs,
        pack_bytes=pack_bytes,
        index_bytes=index_bytes,
        manifest_bytes=manifest_bytes,
        unique_chunks=len(repo.index),
        manifests=len(manifests),
        logical_bytes=sum(m.size for m in manifests),
        volumes=[VolumeStats(v, len(ids), ids[-1], sizes[v]) for v, ids in sorted(per.items())],
    )
