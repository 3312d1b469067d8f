"""Stored bytes per project: each repository's chunk data, attributed fairly.

The rule (docs/usage-and-quotas.md): every chunk a live manifest references is charged
once, at its stored size (compressed and encrypted, as the pack index records it), split
equally among the recovery points that reference it (a point referencing a chunk from
several volumes or offsets counts once); a project is charged the sum of its points'
shares. A chunk that only one point references is that point's alone. Each project keeps
its data in its own part of a repository under its own key (docs/keys.md), so chunks are
shared only among the points of one part (a project's, or the operator's). Points the
catalog does not know (a manifest of ``haven volume backup``, or of another catalog) are
charged to no project: their share is ``unattributed``. Pack overhead, index and manifest
objects and chunks no live manifest references (garbage a prune will collect) are charged
to no one: ``pack_bytes`` shows the whole. Only manifests and pack indexes are read, never
chunk data. A part that cannot be opened (its project's key revoked or unavailable) is
listed with the reason and charged to no one.

A point-in-time figure: what the repositories hold now, whatever the usage window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from fractions import Fraction

from haven.datamover import Repository as DataRepository
from haven.datamover.packs import PACK_PREFIX
from haven.domain.errors import HavenError, NotFoundError, SecurityError
from haven.domain.groups import ProtectionGroup
from haven.domain.points import RecoveryPoint
from haven.engine import repos, resolve

Owner = str | None  # a project id, None: the operator's groups


@dataclass(frozen=True, slots=True)
class RepositoryUsage:
    """One repository: its pack objects' total size, and how its live chunk data was
    charged (to projects' points, or to points the catalog does not know)."""

    repository: str
    pack_bytes: int
    attributed_bytes: int
    unattributed_bytes: int
    missing_chunks: int  # referenced by a live manifest, in no pack index (see repo check)
    project: str | None = None  # the project whose part this is (None: the operator's)
    unreadable: str = ""  # why the part could not be measured (e.g. its key was revoked)


@dataclass(frozen=True, slots=True)
class StoredBytes:
    per_project: dict[Owner, int]
    repositories: tuple[RepositoryUsage, ...]


# the owner of points the catalog does not know: not a project id (PROJECT_RE has no '*')
_UNKNOWN = "*unattributed"


def stored_bytes(groups: list[ProtectionGroup], points: list[RecoveryPoint]) -> StoredBytes:
    """Every repository a group keeps its data in now, charged by the rule above."""
    project_of = {g.name: g.project for g in groups}
    parts: set[tuple[str, str | None]] = set()  # (repository, project: its own part)
    for g in groups:
        try:
            name = resolve.repository_name(g)
        except HavenError:  # no repository resolvable: the group stores nothing
            continue
        if name:
            parts.add((name, g.project))
    totals: dict[Owner, Fraction] = defaultdict(Fraction)
    found: list[RepositoryUsage] = []
    # point ids are unique across groups: a manifest left in a repository its group no
    # longer uses is still its project's
    owner = {p.id: project_of[p.group] for p in points if p.group in project_of}
    for name, project in sorted(parts, key=lambda part: (part[0], part[1] or "")):
        shares, usage = _one(name, project, owner)
        for project, share in shares.items():
            totals[project] += share
        found.append(usage)
    return StoredBytes({k: round(v) for k, v in totals.items()}, tuple(found))


def _one(
    name: str, project: str | None, owner: dict[str, Owner]
) -> tuple[dict[Owner, Fraction], RepositoryUsage]:
    try:
        repo = repos.open_named(name, project)
    except NotFoundError:  # never written to (no point taken yet): nothing stored
        return {}, RepositoryUsage(name, 0, 0, 0, 0, project)
    except SecurityError as exc:  # the project's key: revoked, unavailable or wrong
        return {}, RepositoryUsage(name, 0, 0, 0, 0, project, unreadable=str(exc))
    try:
        pack_bytes = sum(i.size for i in repo.backend.list(PACK_PREFIX))
        shares, usage = _attribute(name, repo, owner, pack_bytes)
        return shares, replace(usage, project=project)
    finally:
        repo.close()


def _attribute(
    name: str, repo: DataRepository, owner: dict[str, Owner], pack_bytes: int
) -> tuple[dict[Owner, Fraction], RepositoryUsage]:
    referenced: dict[bytes, set[str]] = defaultdict(set)
    for m in repo.manifests():
        for chunk in m.referenced():
            referenced[chunk].add(m.point_id)
    # sum over chunks of size * (the owner's points among its n points) / n, kept per n
    # as integers so that the shares are exact whatever the number of chunks
    by_n: dict[Owner, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    missing = 0
    for chunk, point_ids in referenced.items():
        where = repo.index.get(chunk)
        if where is None:
            missing += 1
            continue
        n = len(point_ids)
        for pid in point_ids:
            by_n[owner.get(pid, _UNKNOWN)][n] += where.length
    shares: dict[Owner, Fraction] = {
        who: sum((Fraction(total, n) for n, total in per.items()), Fraction(0))
        for who, per in by_n.items()
    }
    unknown = shares.pop(_UNKNOWN, Fraction(0))
    attributed = sum(shares.values(), Fraction(0))
    usage = RepositoryUsage(name, pack_bytes, round(attributed), round(unknown), missing)
    return shares, usage
