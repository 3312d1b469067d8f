"""Recovery points for interfaces (the CLI, the API): listing, and deleting one."""

from __future__ import annotations

import contextlib
from dataclasses import replace

from haven.domain.errors import ConflictError, HavenError
from haven.domain.points import PointState, RecoveryPoint
from haven.domain.resources import ResourceKind
from haven.engine import resolve, services
from haven.engine import scope as scopes
from haven.engine.scope import Scope


def list_points(group: str) -> list[RecoveryPoint]:
    """Every point of ``group``, oldest first, in every state (damaged ones carry their
    damage). An unknown group is a NotFoundError naming the known ones (exit 3)."""
    cat = services.catalog()
    cat.get(ResourceKind.GROUP, group)
    return cat.points(group)


def delete_point(point_id: str, scope: Scope) -> RecoveryPoint:
    """Delete one point as retention would: its manifests leave the repository's head
    (the chunks go at the next prune), its site checkpoint goes, it ends DELETED.

    Under the group's lock (409 while an operation runs). Refused (409): the group's
    newest intact point (what a failover would use; take a newer one first), a point
    still being taken, and points kept by the site's own backup service (retention
    removes those, keeping Cinder's chains whole). A deleted point is answered as it is."""
    point = scopes.point(scope, point_id)
    if point.state is PointState.DELETED:
        return point
    if point.state is PointState.PENDING:
        raise ConflictError(f"point {point_id} is still being taken")
    if any(v.native for v in point.volumes):
        raise ConflictError(f"point {point_id} is kept by the site's backup service; "
                            "retention removes it")  # fmt: skip
    cat = services.catalog()
    holder = f"delete-{point_id}"[:40]
    cat.acquire_group_lock(point.group, holder)
    try:
        intact = resolve.committed_points(point.group)
        if intact and intact[-1].id == point_id:
            raise ConflictError(
                f"point {point_id} is the newest intact point of group {point.group!r}, the "
                "one a failover uses; take a newer point first"
            )
        manifests = [v.manifest for v in point.volumes]
        group = resolve.group(point.group)
        if manifests:
            repo = resolve.group_repository(group.name, resolve.repository_name(group))
            repo.forget_manifests(manifests)  # the group's part: its project's, with its key
        with contextlib.suppress(HavenError):  # site unreachable: a checkpoint is only an aid
            resolve.driver(point.source_site).delete_point(point.id)
        if point.state is not PointState.FAILED:
            point = replace(point, state=PointState.EXPIRED)
            cat.save_point(point)
        point = replace(point, state=PointState.DELETED)
        cat.save_point(point)
        return point
    finally:
        cat.release_group_lock(point.group, holder)
