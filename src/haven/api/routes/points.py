"""``/v1/points``: a group's recovery points (newest first, ``limit`` 1..1000,
``marker``, like ``/v1/operations``), one point."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from haven.api import render
from haven.api import schemas as s
from haven.api.deps import Ctx
from haven.engine import api as engine

router = APIRouter(prefix="/v1", tags=["points"])
MAX_LIMIT = 1000


@router.get("/points", name="point:list")
def list_points(
    ctx: Ctx,
    group: Annotated[str, Query(pattern=s.NAME_PATTERN, max_length=63)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = MAX_LIMIT,
    marker: Annotated[str | None, Query(pattern=s.ID_PATTERN, max_length=80)] = None,
) -> s.PointList:
    """``group``'s points, newest first, ``limit`` a page; ``marker``: the page after
    that point (a point not of ``group`` is 404). ``next_marker`` is set while a page
    came back full."""
    ctx.authorize("haven:point:list")
    points = engine.points_page(group, limit, marker, ctx.scope)
    return s.PointList(
        points=[render.point(p) for p in points],
        next_marker=points[-1].id if len(points) == limit else None,
    )


@router.get("/points/{point_id}", name="point:get")
def show_point(
    point_id: Annotated[str, Path(pattern=s.ID_PATTERN, max_length=80)], ctx: Ctx
) -> s.PointOut:
    ctx.authorize("haven:point:get")
    return render.point(engine.point(point_id, ctx.scope))


@router.delete("/points/{point_id}", status_code=204, name="point:delete")
def delete_point(
    point_id: Annotated[str, Path(pattern=s.ID_PATTERN, max_length=80)], ctx: Ctx
) -> Response:
    """Its manifests leave the repository (chunks at the next prune), its site checkpoint
    goes. The group's newest intact point is refused (409)."""
    ctx.authorize("haven:point:delete")
    engine.delete_point(point_id, ctx.scope)
    return Response(status_code=204)
