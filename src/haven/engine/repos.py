"""Operator actions on a repository named in the catalog (``haven repo check|repair NAME``).

``open_named`` opens a ``repositories:`` entry the way the engine does (its url, its
passphrase or key file reference), never creating one: the single place interfaces open a
catalog repository by name (check now, repair next).

``check_named`` runs the data mover's check and brings the catalog in line with it:
- a point whose volume manifests the report names as damaged (``CheckReport.damage``,
  matched by ``VolumePoint.manifest``) becomes DAMAGED with the objects to blame;
- a point whose manifest the catalog records but the repository no longer holds is
  damaged too (``manifests/<id>``, "manifest missing"): a problem of the check;
- with ``read_data`` only (every chunk read and authenticated), a DAMAGED point none of
  whose objects is reported any more is found intact again: back to COMMITTED. A
  structure-only check cannot see a flipped byte, so it never clears damage.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from haven.datamover import CheckReport, ProgressCallback, RepairReport, Salvage, check, repair
from haven.datamover import Repository as DataRepository
from haven.datamover.manifest import manifest_key
from haven.domain.errors import HavenError
from haven.domain.points import PointState, RecoveryPoint
from haven.domain.resources import ResourceKind
from haven.domain.sites import Repository
from haven.engine import connect, damage, resolve, services
from haven.engine.damage import Finding

FOUND_BY = "repo check"


def open_named(name: str, project: str | None = None) -> DataRepository:
    """The catalog's repository ``name``, opened (NotFoundError naming the known ones if
    there is no such entry, or no repository at its url). With ``project``: that
    project's part of it, opened with the project's key (engine/keys.py; a revoked key:
    exit 7). The caller closes it."""
    definition = services.catalog().get(ResourceKind.REPOSITORY, name)
    assert isinstance(definition, Repository)  # the catalog returns the kind asked for
    if project is not None:
        return connect.open_project_repository(definition, project)
    return connect.open_repository(definition)


@dataclass(frozen=True, slots=True)
class PointChange:
    """A point whose state a check changed (DAMAGED, or COMMITTED again)."""

    group: str
    point: str
    state: PointState
    objects: tuple[str, ...] = ()
    reason: str = ""


@dataclass(slots=True)
class NamedCheck:
    repository: str
    report: CheckReport
    catalog_problems: list[str] = field(default_factory=list)  # manifests the repo lacks
    damaged: list[PointChange] = field(default_factory=list)
    intact_again: list[PointChange] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.catalog_problems

    @property
    def problems(self) -> list[str]:
        return [*self.report.problems, *self.catalog_problems]


def points_in(name: str, project: str | None = None) -> list[RecoveryPoint]:
    """Committed and damaged points of every group that keeps its data in ``name`` (in
    its part of ``project``: the groups of that project; None: the operator's groups)."""
    cat = services.catalog()
    found: list[RecoveryPoint] = []
    for g in cat.resources().groups:
        if g.project != project:
            continue
        try:
            if resolve.repository_name(g) != name:
                continue
        except HavenError:  # no repository resolvable for this group: not ours
            continue
        found += [
            p for p in cat.points(g.name) if p.state in (PointState.COMMITTED, PointState.DAMAGED)
        ]
    return found


def check_named(
    name: str,
    *,
    read_data: bool = False,
    progress: ProgressCallback | None = None,
    project: str | None = None,
) -> NamedCheck:
    """Check the repository ``name`` (with ``project``: that project's part of it)."""
    repo = open_named(name, project)
    try:
        report = check(repo, read_data=read_data, progress=progress)
        present = set(repo.present_manifest_ids())
    finally:
        repo.close()
    result = NamedCheck(name, report)
    points = points_in(name, project)
    owner = {v.manifest: p for p in points for v in p.volumes if not v.native}
    findings: defaultdict[str, list[Finding]] = defaultdict(list)
    for d in report.damage:
        if d.manifest_id in owner:
            what = d.volume or f"manifest {d.manifest_id}"
            findings[owner[d.manifest_id].id].append(Finding(d.objects, f"{what}: {d.reason}"))
    for manifest_id, p in sorted(owner.items()):
        if manifest_id not in present:
            key = manifest_key(manifest_id)
            result.catalog_problems.append(
                f"point {p.id} of group {p.group}: {key} is missing from the repository"
            )
            findings[p.id].append(Finding((key,), "manifest missing"))
    for p in points:
        merged = damage.merge(findings.get(p.id, []))
        if merged is not None:
            damage.mark_damaged(p.id, merged, FOUND_BY)
            result.damaged.append(
                PointChange(p.group, p.id, PointState.DAMAGED, merged.objects, merged.reason)
            )
        elif read_data and p.state is PointState.DAMAGED:
            services.catalog().mark_point_intact(p.id)
            result.intact_again.append(PointChange(p.group, p.id, PointState.COMMITTED))
    return result


@dataclass(slots=True)
class NamedRepair:
    repository: str
    report: RepairReport
    damaged: list[PointChange] = field(default_factory=list)
    intact_again: list[PointChange] = field(default_factory=list)

    def catalog(self) -> dict[str, object]:
        """What repair changed in the catalog, for display."""
        lines = [f"point {c.point} ({c.group}) damaged: {c.reason}" for c in self.damaged]
        lines += [f"point {c.point} ({c.group}) intact again" for c in self.intact_again]
        return {"catalog_changes": lines}


def repair_named(
    name: str,
    *,
    read_data: bool = False,
    dry_run: bool = False,
    accept_rollback: bool = False,
    project: str | None = None,
) -> NamedRepair:
    """Repair the catalog's repository ``name``; the catalog follows the verdict: a point
    with any volume partial or lost is DAMAGED (objects named); with ``read_data``, a
    DAMAGED point all of whose volumes are intact is COMMITTED again. With ``project``:
    that project's part of the repository."""
    repo = open_named(name, project)
    try:
        report = repair(repo, read_data=read_data, dry_run=dry_run, accept_rollback=accept_rollback)
    finally:
        repo.close()
    result = NamedRepair(name, report)
    if dry_run:
        return result
    verdict = {p.manifest_id: p for p in report.points}
    for p in points_in(name, project):
        mine = [verdict.get(v.manifest) for v in p.volumes if not v.native]
        broken = [s for s in mine if s is None or s.salvage is not Salvage.INTACT]
        if broken:
            objects = tuple(sorted({o for s in broken if s is not None for o in s.objects}))
            what = ", ".join(
                f"{s.volume or s.manifest_id}: {s.salvage.value}" if s else "manifest not found"
                for s in broken
            )
            damage.mark_damaged(p.id, Finding(objects, what), "repo repair")
            result.damaged.append(PointChange(p.group, p.id, PointState.DAMAGED, objects, what))
        elif read_data and p.state is PointState.DAMAGED:
            services.catalog().mark_point_intact(p.id)
            result.intact_again.append(PointChange(p.group, p.id, PointState.COMMITTED))
    return result
