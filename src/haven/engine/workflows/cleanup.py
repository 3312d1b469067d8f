"""Cleanup after a drill: remove exactly what the drill recorded, nothing else.

In ledger order (``LedgerKind``): servers first (destroyed, then undefined), then floating
IPs, ports and volumes, then routers, subnets, networks, security groups, keypairs,
flavors, volume types and role assignments. Each removal is marked in the catalog as it
happens, so a resumed cleanup skips what is gone; a resource already missing at the site
counts as removed. Servers and volumes go through the SiteDriver protocol, a drill's bubble
through the NetworkCreation role, the rest through ProjectInfrastructure.

Steps: cleanup.start, cleanup.remove:<kind>/<name> per resource, finish.
"""

from __future__ import annotations

import contextlib
from typing import Any

from dbos import DBOS

from haven.catalog.store import CreatedResource
from haven.domain.errors import ConflictError, NotFoundError, ValidationError
from haven.domain.operations import OperationKind
from haven.domain.project import LedgerKind
from haven.engine import ops, resolve, services
from haven.engine.model import Note
from haven.engine.ports import NetworkCreation, ProjectInfrastructure
from haven.engine.steps import engine_step
from haven.sites.base import SiteDriver
from haven.sites.errors import SiteNotFound


@engine_step("cleanup.start")
def _start(op_id: str, drill_op: str) -> list[CreatedResource]:
    cat = services.catalog()
    drill = cat.operation(drill_op)
    if drill.kind is not OperationKind.TEST_FAILOVER:
        raise ConflictError(f"operation {drill_op} is a {drill.kind.value}, not a drill")
    ops.begin(op_id, OperationKind.CLEANUP, drill.group, op_id)
    todo = [r for r in cat.created_resources(drill_op) if not r.removed]
    return sorted(todo, key=lambda r: r.kind.removal_rank)


@engine_step("cleanup.remove")
def _remove(op_id: str, res: CreatedResource) -> Note:
    drv = resolve.driver(res.site)
    with contextlib.suppress(SiteNotFound, NotFoundError):
        _remove_at(drv, res)
    services.catalog().mark_removed(res.operation_id, res.site, res.kind, res.ref)
    return Note(f"removed {res.kind} {res.name} at {res.site}")


def _remove_at(drv: SiteDriver, res: CreatedResource) -> None:
    if res.kind is LedgerKind.SERVER:
        with contextlib.suppress(SiteNotFound):
            drv.destroy_server(res.ref)
        drv.undefine_server(res.ref)
    elif res.kind is LedgerKind.VOLUME:
        vol = next((v for v in drv.list_volumes() if v.id == res.ref), None)
        if vol is not None:
            drv.delete_volume(vol)
    elif res.kind is LedgerKind.NETWORK and isinstance(drv, NetworkCreation):
        drv.delete_network(res.ref)
    elif isinstance(drv, ProjectInfrastructure):
        drv.remove(res.kind, res.ref)
    else:
        raise ValidationError(
            f"sites.{res.site}.driver", f"the site cannot remove a {res.kind.value} ({res.name})"
        )


@DBOS.workflow(name="haven.cleanup")
def cleanup_workflow(op_id: str, drill_op: str) -> Any:
    try:
        todo = _start(op_id, drill_op)
        for res in todo:
            _remove(op_id, res, label=f"{res.kind}/{res.name}")
        result = {"drill": drill_op, "removed": len(todo)}
        ops.finish(op_id, {k: str(v) for k, v in result.items()}, release_lock=True)
        return result
    except Exception as exc:
        ops.fail(op_id, exc, release_lock=True)
        raise
