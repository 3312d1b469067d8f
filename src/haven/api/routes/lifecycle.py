"""``/v1/groups/{name}/suspend`` and ``/resume``: a group's protection paused and
resumed. These are group state changes, not operations (the engine's ``suspend`` and
``resume`` are immediate and leave no operation record, as ``haven group suspend`` does):
200 with the group's state, idempotent, 409 while an operation holds the group, 404 for
another project's group."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from haven.api import schemas as s
from haven.api.deps import Ctx
from haven.engine import api as engine

router = APIRouter(prefix="/v1", tags=["groups"])
NamePath = Annotated[str, Path(pattern=s.NAME_PATTERN, max_length=63)]


@router.post("/groups/{name}/suspend", name="group:suspend")
def suspend(name: NamePath, ctx: Ctx) -> s.GroupStateOut:
    """Take no points of the group until it is resumed; its RPO may grow meanwhile."""
    ctx.authorize("haven:group:suspend")
    return s.GroupStateOut(group=name, state=engine.suspend(name, ctx.scope).value)


@router.post("/groups/{name}/resume", name="group:resume")
def resume(name: NamePath, ctx: Ctx) -> s.GroupStateOut:
    """Back to protected (unprotected if it has no point yet); the next point increments
    from the last one."""
    ctx.authorize("haven:group:resume")
    return s.GroupStateOut(group=name, state=engine.resume(name, ctx.scope).value)
