"""Reading what a workflow needs from the catalog and the sites (inside steps only)."""

from __future__ import annotations

import contextlib

from haven.catalog.store import Placement
from haven.datamover import Repository as DataRepository
from haven.domain.errors import ValidationError
from haven.domain.groups import ProtectionGroup
from haven.domain.plans import RecoveryPlan
from haven.domain.points import PointState, RecoveryPoint
from haven.domain.policies import DataPath, Policy
from haven.domain.resources import ResourceKind
from haven.domain.sites import Repository, Site
from haven.engine import connect, services
from haven.engine.keys import check_project
from haven.sites.base import SiteDriver
from haven.sites.errors import SiteNotFound


def group(name: str) -> ProtectionGroup:
    g: ProtectionGroup = services.catalog().get(ResourceKind.GROUP, name)
    return g


def plan(name: str) -> RecoveryPlan:
    p: RecoveryPlan = services.catalog().get(ResourceKind.PLAN, name)
    return p


def policy(name: str) -> Policy:
    p: Policy = services.catalog().get(ResourceKind.POLICY, name)
    return p


def site(name: str) -> Site:
    s: Site = services.catalog().get(ResourceKind.SITE, name)
    return s


def driver(site_name: str) -> SiteDriver:
    return connect.driver_for(site(site_name))


def repository_name(g: ProtectionGroup) -> str:
    """The group's repository; "" when its policy keeps data in the site's own backup
    service (data path cinder-backup) and the group names none."""
    if g.repository:
        return g.repository
    if policy(g.policy).data_path is DataPath.CINDER_BACKUP:
        return ""
    repos = services.catalog().resources().repositories
    if len(repos) == 1:
        return repos[0].name
    raise ValidationError(f"groups.{g.name}.repository", "no repository named for this group")


def repository(name: str, limit: int | None = None) -> DataRepository:
    """The repository ``name`` itself (the operator's part); ``limit`` (bytes/s) caps its
    traffic (see connect). Workflows use ``group_repository``."""
    r: Repository = services.catalog().get(ResourceKind.REPOSITORY, name)
    return connect.repository_for(r, limit)


def group_repository(group_name: str, name: str, limit: int | None = None) -> DataRepository:
    """Where the group ``group_name`` keeps its data in the repository ``name``: the
    repository itself for an operator's group, the project's part of it, opened with the
    project's key, for a group with a ``project`` (engine/keys.py; a revoked key: exit 7).
    ``limit`` (bytes/s) caps its traffic (see connect)."""
    r: Repository = services.catalog().get(ResourceKind.REPOSITORY, name)
    project = group(group_name).project
    if project is None:
        return connect.repository_for(r, limit)
    check_project(project, f"groups.{group_name}.project")
    return connect.project_repository(r, project, limit)


def placement(g: ProtectionGroup) -> Placement:
    """Where the group runs now; by default its source site, servers found by name (and
    the servers its volume members are attached to, those that exist: a planned failover
    stops them too, their writes go to the volumes)."""
    found = services.catalog().placement(g.name)
    if found is not None:
        return found
    drv = driver(g.source_site)
    servers = {name: drv.get_server(name).id for name in g.servers()}
    for host in g.hosts():
        with contextlib.suppress(SiteNotFound):  # the protect refuses it, naming the member
            servers.setdefault(host, drv.get_server(host).id)
    return Placement(g.name, g.source_site, g.target_site, servers)


def committed_points(group_name: str) -> list[RecoveryPoint]:
    """Oldest first."""
    return [p for p in services.catalog().points(group_name) if p.state is PointState.COMMITTED]


def point(group_name: str, point_id: str) -> RecoveryPoint:
    for p in services.catalog().points(group_name):
        if p.id == point_id:
            return p
    from haven.domain.errors import NotFoundError

    raise NotFoundError(f"group {group_name} has no point {point_id}")
