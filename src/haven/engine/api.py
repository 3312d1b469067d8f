"""The engine's one entry point for interfaces: the CLI today, the REST API and the
dashboard next. Interfaces parse and render; every decision — which workflow runs, which
group a plan or a drill belongs to, what "not found" means — is taken here.

Every DR action runs as one durable operation and returns it when it ends (its state,
result, error and exit code; ``progress`` is called with the operation while it runs).
Reads (status, points, operations) return domain objects. Errors are HavenErrors with the
README's exit codes: NotFoundError (3) for unknown groups, plans, points and operations,
ConflictError (4) for a busy group or a state that forbids the action.

Tenancy: reads and ``submit`` take a :class:`Scope` (one Keystone project, or every
project: the CLI's default ``OPERATOR``); an object outside it is a NotFoundError like an
unknown one (``engine/scope.py``). ``submit`` records an operation and returns it at once
(the REST API); the other actions run it to its end (the CLI).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from haven.catalog.submissions import DEFAULT_KEY_TTL
from haven.datamover import ProgressCallback
from haven.domain.errors import NotFoundError, ValidationError
from haven.domain.groups import GroupState, ProtectionGroup
from haven.domain.operations import Operation, OperationKind
from haven.domain.points import RecoveryPoint
from haven.domain.resources import Resource, ResourceKind
from haven.engine import lifecycle, quotas, service, services, tenancy
from haven.engine import scope as scopes
from haven.engine import usage as usage_report
from haven.engine.apply import ApplyResult
from haven.engine.quotas import ProjectQuota, QuotaResource
from haven.engine.repos import NamedCheck, NamedRepair, check_named, repair_named
from haven.engine.scope import OPERATOR as OPERATOR
from haven.engine.scope import Scope as Scope
from haven.engine.status import GroupStatus, all_status, group_status
from haven.engine.submit import Submission as Submission
from haven.engine.usage import UsageReport

Progress = Callable[[Operation], None]


def _plan_group(plan: str) -> str:
    return str(services.catalog().get(ResourceKind.PLAN, plan).group)


def protect(group: str, *, progress: Progress | None = None) -> Operation:
    """A recovery point of ``group`` now (ordered freeze, snapshot, thaw, backup)."""
    from haven.engine.workflows.protect import protect_workflow

    g = services.catalog().get(ResourceKind.GROUP, group)
    assert isinstance(g, ProtectionGroup)  # the catalog returns the kind asked for
    quotas.check_protect(g)  # refused before any operation is recorded (and again in it)
    return service.run(OperationKind.PROTECT, group, protect_workflow, group, progress=progress)


def failover(
    plan: str, *, planned: bool = False, point: str | None = None, progress: Progress | None = None
) -> Operation:
    """Bring the plan's group up at its recovery site (planned: the source stops and a
    final point is taken first; unplanned: the newest intact point, or ``point``)."""
    from haven.engine.workflows.failover import failover_workflow

    params = {"plan": plan, "planned": str(planned), "point": point or ""}
    return service.run(OperationKind.FAILOVER, _plan_group(plan), failover_workflow, plan, planned,
                point, params=params, progress=progress)  # fmt: skip


def drill(plan: str, *, point: str | None = None, progress: Progress | None = None) -> Operation:
    """Test failover into the plan's isolated test network; production is not touched."""
    from haven.engine.workflows.test_failover import drill_workflow

    return service.run(OperationKind.TEST_FAILOVER, _plan_group(plan), drill_workflow, plan, point,
                params={"plan": plan}, progress=progress)  # fmt: skip


def cleanup(target: str, *, progress: Progress | None = None) -> Operation:
    """Remove exactly what a drill created. ``target``: the drill's operation id, or its
    plan (then the plan's newest drill not yet cleaned up)."""
    from haven.engine.workflows.cleanup import cleanup_workflow
    from haven.engine.workflows.test_failover import uncleaned_drills

    cat = services.catalog()
    try:
        drill_op = cat.operation(target)
    except NotFoundError:
        pending = uncleaned_drills(_plan_group(target))
        if not pending:
            raise NotFoundError(f"plan {target} has no drill left to clean up") from None
        drill_op = cat.operation(pending[-1])
    return service.run(OperationKind.CLEANUP, drill_op.group, cleanup_workflow, drill_op.id,
                params={"drill": drill_op.id}, progress=progress)  # fmt: skip


def failback(plan: str, *, progress: Progress | None = None) -> Operation:
    """Reverse-protect (delta only), then a planned failover back; site roles swap back."""
    from haven.engine.workflows.failback import failback_workflow

    return service.run(OperationKind.FAILBACK, _plan_group(plan), failback_workflow, plan,
                params={"plan": plan}, progress=progress)  # fmt: skip


def suspend(group: str, scope: Scope = OPERATOR) -> GroupState:
    """Pause protection of ``group``; its RPO may grow meanwhile. A group state change,
    not a durable operation: immediate, idempotent (suspending a suspended group is a
    no-op), ConflictError while an operation holds the group."""
    scopes.group(scope, group)
    return lifecycle.suspend(group)


def resume(group: str, scope: Scope = OPERATOR) -> GroupState:
    """Resume protection of ``group``; the next point increments from the last one.
    Immediate and idempotent like :func:`suspend` (a group not suspended is unchanged)."""
    scopes.group(scope, group)
    return lifecycle.resume(group)


def status(scope: Scope = OPERATOR) -> list[GroupStatus]:
    """Per group: the newest point's age against the RPO, the last operation."""
    names = scopes.visible_groups(scope)
    if names is None:
        return all_status()
    return [group_status(name) for name in names]


def points(group: str, scope: Scope = OPERATOR) -> list[RecoveryPoint]:
    """Every point of ``group``, oldest first (damaged ones carry their damage)."""
    from haven.engine.points import list_points

    scopes.group(scope, group)
    return list_points(group)


def points_page(
    group: str, limit: int, marker: str | None = None, scope: Scope = OPERATOR
) -> list[RecoveryPoint]:
    """A page of ``group``'s points, newest first; ``marker``: the page after that point
    (NotFoundError when it is not a point of ``group`` in ``scope``)."""
    scopes.group(scope, group)
    return services.catalog().points_page(group, limit, marker)


def point(point_id: str, scope: Scope = OPERATOR) -> RecoveryPoint:
    return scopes.point(scope, point_id)


def delete_point(point_id: str, scope: Scope = OPERATOR) -> RecoveryPoint:
    """Delete one recovery point (not the group's newest intact one); see engine/points."""
    from haven.engine.points import delete_point as _delete

    return _delete(point_id, scope)


def operations(
    group: str | None = None,
    limit: int = 20,
    scope: Scope = OPERATOR,
    marker: str | None = None,
) -> list[Operation]:
    """Operations, newest first (of one group); ``marker``: the page after that one."""
    if group is not None:
        scopes.group(scope, group)
    if marker is not None:
        scopes.operation(scope, marker)
    names = scopes.visible_groups(scope)
    return services.catalog().operations(group, limit, groups=names, marker=marker)


def operation(op_id: str, scope: Scope = OPERATOR) -> Operation:
    """One operation with its step log."""
    return scopes.operation(scope, op_id)


def submit(
    sub: Submission,
    scope: Scope = OPERATOR,
    idempotency_key: str | None = None,
    key_ttl: timedelta = DEFAULT_KEY_TTL,
) -> tuple[Operation, bool]:
    """Record the operation (holding its group's lock) and return it at once; it runs in
    this process's engine. (operation, replayed): ``replayed`` for an idempotent replay
    (a key is answered for ``key_ttl`` after its first submit, then free again)."""
    from haven.engine.submit import submit as _submit

    return _submit(sub, scope, idempotency_key, key_ttl)


def resources(kind: ResourceKind, scope: Scope = OPERATOR) -> list[Resource]:
    """Sites, repositories, policies (everyone's), groups and plans (the scope's)."""
    return tenancy.listed(kind, scope)


def resource(kind: ResourceKind, name: str, scope: Scope = OPERATOR) -> Resource:
    return tenancy.get(kind, name, scope)


def delete_resource(kind: ResourceKind, name: str, scope: Scope = OPERATOR) -> None:
    """Delete a plan, or a group without plans and points (409 otherwise)."""
    tenancy.delete(kind, name, scope)


def apply(data: Any, scope: Scope = OPERATOR, dry_run: bool = False) -> ApplyResult:
    """``haven apply`` of a parsed spec document; a project scope may hold groups and
    plans only, which land in its project."""
    return tenancy.apply(data, scope, dry_run)


def resume_operation(op_id: str, *, progress: Progress | None = None) -> Operation:
    """Finish an operation whose process died: completed steps are not run again."""
    return service.resume(op_id, progress)


def check_repository(
    name: str,
    *,
    read_data: bool = False,
    progress: ProgressCallback | None = None,
    project: str | None = None,
) -> NamedCheck:
    """Check the catalog's repository ``name`` (``project``: that project's part, with
    the project's key); the catalog's points follow (damaged)."""
    return check_named(name, read_data=read_data, progress=progress, project=project)


def repair_repository(
    name: str,
    *,
    read_data: bool = False,
    dry_run: bool = False,
    accept_rollback: bool = False,
    project: str | None = None,
) -> NamedRepair:
    """Repair the catalog's repository ``name`` (``project``: that project's part); the
    catalog's points follow the verdict."""
    return repair_named(name, read_data=read_data, dry_run=dry_run,
                        accept_rollback=accept_rollback, project=project)  # fmt: skip


def usage(
    start: datetime,
    end: datetime,
    *,
    projects: Collection[str | None] | None = None,
    stored: bool = True,
    scope: Scope = OPERATOR,
) -> UsageReport:
    """Usage per project in [start, end) for chargeback (``engine/usage.py`` states the
    rules). ``projects``: only these (None in it: the operator's own groups); None: all
    that ``scope`` sees (a project's scope: its own only; naming another is NotFound).
    ``stored``: also measure stored bytes now (opens every repository). A window that
    is not [earlier, later) with time zones, or longer than 400 days: ValidationError
    naming ``start`` or ``end``."""
    if not scope.all_projects:
        if projects is not None and any(p != scope.project for p in projects):
            raise NotFoundError("no such project in your scope")
        projects = [scope.project]
    return usage_report.usage(start, end, projects=projects, stored=stored)


def quota(project: str, scope: Scope = OPERATOR) -> ProjectQuota:
    """``project``'s limits (None: unlimited) and use. A bad project id: ValidationError;
    a project outside ``scope``: NotFoundError."""
    if not scope.all_projects and project != scope.project:
        raise NotFoundError(f"no project {project!r} in your scope")
    return quotas.show(project)


def list_quotas() -> list[ProjectQuota]:
    """Every project with a quota or a group."""
    return quotas.show_all()


def set_quota(project: str, changes: Mapping[QuotaResource, int | None]) -> ProjectQuota:
    """Set some of ``project``'s limits (None: unlimited; absent: unchanged). Negative or
    beyond ``quotas.MAX_LIMIT``: ValidationError naming the quota."""
    return quotas.set_limits(project, changes)


def start_api_engine() -> None:
    """Launch the durable engine as the API's executor (``api-<host>``): DBOS recovers
    the operations an earlier API process on this host left unfinished."""
    from haven.engine import runtime
    from haven.engine.submit import executor

    runtime.launch(executor())


def stop_engine() -> None:
    from haven.engine import runtime

    runtime.shutdown()


def _key_store(repository: str, project: str) -> tuple[object, str]:
    from haven.domain.sites import Repository
    from haven.engine import connect
    from haven.engine.keys import check_project

    definition = services.catalog().get(ResourceKind.REPOSITORY, repository)
    assert isinstance(definition, Repository)  # the catalog returns the kind asked for
    return connect.key_store(definition), check_project(project, "project")


def create_project_key(repository: str, project: str) -> str:
    """Make ``project``'s data key in the repository's key store (local stores only: a
    Barbican key is the tenant's to make); its reference, never the key."""
    from haven.engine.keys import KeyCreation

    store, project = _key_store(repository, project)
    if not isinstance(store, KeyCreation):
        raise ValidationError(
            f"repositories.{repository}.key_store",
            "Barbican keys are the tenant's: store one there, grant Haven's user read "
            "access (ACL) and register it (haven keys register)",
        )
    return store.create(project)


def revoke_project_key(repository: str, project: str) -> str:
    """Withdraw ``project``'s local key: its groups' protect and restore fail (exit 7)."""
    from haven.engine.keys import KeyCreation

    store, project = _key_store(repository, project)
    if not isinstance(store, KeyCreation):
        raise ValidationError(
            f"repositories.{repository}.key_store",
            "a Barbican key is revoked by its owner: remove Haven's user from the secret's "
            "ACL, or delete the secret",
        )
    return store.revoke(project)


def register_project_key(repository: str, project: str, ref: str, scope: Scope = OPERATOR) -> str:
    """Record which Barbican secret holds ``project``'s key (the tenant's reference). A
    project's scope registers its own key only (another project: NotFoundError)."""
    from haven.engine.keys import KeyRegistration

    if not scope.all_projects and project != scope.project:
        raise NotFoundError(f"no project {project!r} in your scope")
    store, project = _key_store(repository, project)
    if not isinstance(store, KeyRegistration):
        raise ValidationError(
            f"repositories.{repository}.key_store",
            "local keys are made by Haven (haven keys create), not registered",
        )
    return store.register(project, ref)
