"""``/v1/operations``: submit (202 + Location, Idempotency-Key answered for
``HAVEN_API_IDEMPOTENCY_TTL`` seconds, 409 for a busy group),
list (newest first, ``limit`` 1..1000, ``marker``), show with the step log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response

from haven.api import render
from haven.api import schemas as s
from haven.api.deps import Ctx
from haven.domain.errors import ValidationError
from haven.domain.operations import OperationKind
from haven.engine import api as engine

router = APIRouter(prefix="/v1", tags=["operations"])
MAX_LIMIT = 1000
IdPath = Annotated[str, Path(pattern=s.ID_PATTERN, max_length=80)]
KEY_HELP = "1-255 printable ASCII characters (a UUID is a good key)"


def _key(value: str | None) -> str | None:
    if value is None:
        return None
    if not (1 <= len(value) <= 255) or not value.isascii() or not value.isprintable():
        raise ValidationError("Idempotency-Key", KEY_HELP)
    return value


@router.post("/operations", status_code=202, name="operation:create")
def submit(
    body: s.OperationSubmit,
    ctx: Ctx,
    response: Response,
    idempotency_key: Annotated[str | None, Header(description=KEY_HELP)] = None,
) -> s.OperationOut:
    ctx.authorize(f"haven:operation:{body.kind}")
    sub = engine.Submission(
        OperationKind(body.kind), body.group, body.plan, body.point, body.planned
    )
    key, ttl = _key(idempotency_key), ctx.services.idempotency_ttl
    op, _replayed = engine.submit(sub, ctx.scope, key, ttl)
    response.headers["Location"] = f"/v1/operations/{op.id}"
    return render.operation(op)


@router.get("/operations", name="operation:list")
def list_operations(
    ctx: Ctx,
    group: Annotated[str | None, Query(pattern=s.NAME_PATTERN, max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    marker: Annotated[str | None, Query(pattern=s.ID_PATTERN, max_length=80)] = None,
) -> s.OperationList:
    ctx.authorize("haven:operation:list")
    ops = engine.operations(group, limit, ctx.scope, marker)
    return s.OperationList(
        operations=[render.operation(o) for o in ops],
        next_marker=ops[-1].id if len(ops) == limit else None,
    )


@router.get("/operations/{op_id}", name="operation:get")
def show_operation(op_id: IdPath, ctx: Ctx) -> s.OperationOut:
    ctx.authorize("haven:operation:get")
    return render.operation(engine.operation(op_id, ctx.scope), with_steps=True)
