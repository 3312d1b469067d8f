"""``/v1/sites``, ``/v1/repositories``, ``/v1/policies`` (read by everyone, written by
admins) and ``/v1/groups``, ``/v1/plans`` (the caller's project). A body is one resource
in the spec format (the fields ``haven apply`` takes for that kind) and goes through
``haven apply``'s validation; the policy rule of each route is ``haven:<kind>:<action>``."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from haven.api import render
from haven.api import schemas as s
from haven.api.deps import Ctx
from haven.domain.errors import ConflictError, NotFoundError, ValidationError
from haven.domain.resources import ResourceKind
from haven.engine import api as engine

router = APIRouter(prefix="/v1")
NamePath = Annotated[str, Path(pattern=s.NAME_PATTERN, max_length=63)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Marker = Annotated[str | None, Query(pattern=s.NAME_PATTERN, max_length=63)]
SpecBody = Annotated[dict[str, Any], Body(description="one resource in the spec format")]
DELETABLE = (ResourceKind.GROUP, ResourceKind.PLAN)


def _register(kind: ResourceKind) -> None:
    base = f"/{kind.plural}"
    rule = f"haven:{kind.value}"

    def list_items(ctx: Ctx, limit: Limit = 1000, marker: Marker = None) -> s.ResourceList:
        """By name; ``marker``: the page after that name."""
        ctx.authorize(f"{rule}:list")
        items = sorted(engine.resources(kind, ctx.scope), key=lambda i: i.name)
        page = [i for i in items if marker is None or i.name > marker][:limit]
        more = len(page) == limit and page[-1].name != items[-1].name
        return s.ResourceList(
            items=[render.resource(kind, i) for i in page],
            next_marker=page[-1].name if more else None,
        )

    def get_item(name: NamePath, ctx: Ctx) -> s.ResourceOut:
        ctx.authorize(f"{rule}:get")
        return render.resource(kind, engine.resource(kind, name, ctx.scope))

    def create_item(body: SpecBody, ctx: Ctx, response: Response) -> s.ResourceOut:
        ctx.authorize(f"{rule}:create")
        name = body.get("name")
        if isinstance(name, str):
            try:
                engine.resource(kind, name, ctx.scope)
            except NotFoundError:
                pass
            else:
                raise ConflictError(
                    f"{kind.value} {name!r} exists; PUT /v1{base}/{name} replaces it"
                )
        engine.apply({kind.plural: [body]}, ctx.scope)
        made = engine.resource(kind, str(name), ctx.scope)
        response.status_code = 201
        response.headers["Location"] = f"/v1{base}/{made.name}"
        return render.resource(kind, made)

    def replace_item(name: NamePath, body: SpecBody, ctx: Ctx) -> s.ResourceOut:
        ctx.authorize(f"{rule}:update")
        if body.setdefault("name", name) != name:
            raise ValidationError("name", f"the body names {body['name']!r}, the path {name!r}")
        engine.resource(kind, name, ctx.scope)  # 404 unless the caller sees it
        engine.apply({kind.plural: [body]}, ctx.scope)
        return render.resource(kind, engine.resource(kind, name, ctx.scope))

    def delete_item(name: NamePath, ctx: Ctx) -> Response:
        ctx.authorize(f"{rule}:delete")
        engine.delete_resource(kind, name, ctx.scope)
        return Response(status_code=204)

    tag: list[str | Enum] = [kind.plural]
    router.add_api_route(base, list_items, methods=["GET"], tags=tag, name=f"{kind.value}:list")
    router.add_api_route(
        f"{base}/{{name}}", get_item, methods=["GET"], tags=tag, name=f"{kind.value}:get"
    )
    router.add_api_route(
        base, create_item, methods=["POST"], status_code=201, tags=tag, name=f"{kind.value}:create"
    )
    router.add_api_route(
        f"{base}/{{name}}", replace_item, methods=["PUT"], tags=tag, name=f"{kind.value}:update"
    )
    if kind in DELETABLE:
        router.add_api_route(
            f"{base}/{{name}}",
            delete_item,
            methods=["DELETE"],
            status_code=204,
            tags=tag,
            name=f"{kind.value}:delete",
        )


for _kind in ResourceKind:
    _register(_kind)
