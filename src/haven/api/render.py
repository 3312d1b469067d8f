"""Domain objects (from the engine) into the API's response models (``schemas``).

Secrets: a repository's password, key file and credentials are references (a variable
or file name), not values; still, the API shows only whether each is set, since a file
path on the Haven host is nothing a tenant needs. Operation parameters that name the
Haven host and process (executor, host, pid) are internal and left out.
"""

from __future__ import annotations

from typing import Any

from haven.api import schemas as s
from haven.domain.codec import to_data
from haven.domain.groups import ProtectionGroup
from haven.domain.operations import Operation
from haven.domain.points import PointState, RecoveryPoint
from haven.domain.resources import Resource, ResourceKind
from haven.domain.sites import Repository
from haven.engine.apply import ApplyResult
from haven.engine.status import GroupStatus

INTERNAL_PARAMS = frozenset({"executor", "host", "pid"})


def resource(kind: ResourceKind, item: Resource) -> s.ResourceOut:
    data: dict[str, Any] = to_data(item)
    if isinstance(item, Repository):
        data["password"] = item.password is not None
        data["key_file"] = item.key_file is not None
        data["credentials"] = sorted(item.credentials)
    project = item.project if isinstance(item, ProtectionGroup) else None
    return s.ResourceOut(kind=kind.value, name=item.name, project=project, spec=data)


def operation(op: Operation, with_steps: bool = False) -> s.OperationOut:
    steps = [
        s.StepOut(
            seq=st.seq,
            name=st.name,
            state=st.state.value,
            started_at=st.started_at,
            finished_at=st.finished_at,
            detail=st.detail,
        )
        for st in (op.steps if with_steps else ())
    ]
    return s.OperationOut(
        id=op.id,
        kind=op.kind.value,
        group=op.group,
        state=op.state.value,
        created_at=op.created_at,
        finished_at=op.finished_at,
        params={k: v for k, v in op.params.items() if k not in INTERNAL_PARAMS},
        result=dict(op.result),
        error=op.error,
        error_type=op.error_type,
        exit_code=int(op.exit_code) if op.exit_code is not None else None,
        steps=steps,
        links=[s.Link(rel="self", href=f"/v1/operations/{op.id}")],
    )


def point(p: RecoveryPoint) -> s.PointOut:
    return s.PointOut(
        id=p.id,
        group=p.group,
        state=p.state.value,
        created_at=p.created_at,
        consistency=str(p.consistency.value),
        consistency_reason=p.consistency_reason,
        parent=p.parent,
        volumes=len(p.volumes),
        bytes_read=p.stats.bytes_read,
        bytes_sent=p.stats.bytes_sent,
        freeze_window_ms=p.stats.freeze_window_ms,
        damaged=p.state is PointState.DAMAGED,
    )


def status(st: GroupStatus) -> s.StatusOut:
    data = to_data(st)
    return s.StatusOut(**data)


def applied(result: ApplyResult) -> s.ApplyOut:
    return s.ApplyOut(
        dry_run=result.dry_run,
        changed=result.changed,
        changes=[
            s.ChangeOut(
                kind=c.kind.value,
                name=c.name,
                action=c.action.value,
                fields=[s.FieldChangeOut(path=f.path) for f in c.fields],
            )
            for c in result.changes
        ],
    )
