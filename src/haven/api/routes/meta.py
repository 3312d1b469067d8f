"""``/`` and ``/v1`` (version discovery, no token needed), ``/v1/status`` and
``/v1/apply`` (a whole spec, the same validation as ``haven apply``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from haven.api import render
from haven.api import schemas as s
from haven.api.deps import Ctx
from haven.engine import api as engine
from haven.engine.scope import Scope

router = APIRouter()
V1 = s.Version(
    id="v1",
    status="CURRENT",
    links=[s.Link(rel="self", href="/v1"), s.Link(rel="describedby", href="/v1/openapi.json")],
)


@router.get("/", tags=["versions"], name="versions")
def versions() -> s.Versions:
    return s.Versions(versions=[V1])


@router.get("/v1", tags=["versions"], name="version:v1")
def version() -> s.Version:
    return V1


@router.get("/v1/status", tags=["status"], name="status:get")
def status(ctx: Ctx) -> s.StatusList:
    ctx.authorize("haven:status:get")
    return s.StatusList(groups=[render.status(g) for g in engine.status(ctx.scope)])


@router.post("/v1/apply", tags=["apply"], name="apply")
def apply(
    ctx: Ctx,
    spec: Annotated[dict[str, Any], Body(description="a spec document (apiVersion haven/v1)")],
    dry_run: Annotated[bool, Query()] = False,
) -> s.ApplyOut:
    """Create or update every resource of ``spec``, all or nothing. Without the
    haven:apply:operator rule (admin) the spec may hold groups and plans only; they land
    in the caller's project."""
    ctx.authorize("haven:apply")
    scope = ctx.scope
    if not ctx.allowed("haven:apply:operator"):
        scope = Scope.of(ctx.caller.project_id)
    return render.applied(engine.apply(spec, scope, dry_run))
