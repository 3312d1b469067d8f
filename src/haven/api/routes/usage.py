"""``/v1/usage`` (a window's usage per project, for chargeback) and ``/v1/quotas`` (a
project's limits and use). The rules behind the numbers: docs/usage-and-quotas.md."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from haven.api import schemas as s
from haven.api.deps import Ctx
from haven.engine import api as engine
from haven.engine.quotas import ProjectQuota, QuotaResource

router = APIRouter(prefix="/v1", tags=["usage"])
PROJECT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


@router.get("/usage", name="usage:get")
def usage(
    ctx: Ctx,
    start: Annotated[datetime, Query(description="ISO 8601 with a time zone")],
    end: Annotated[datetime, Query(description="ISO 8601 with a time zone, after start")],
    project: Annotated[str | None, Query(pattern=PROJECT_PATTERN)] = None,
    stored: bool = True,
) -> s.UsageOut:
    """Per project in [start, end): protected GB-hours, bytes between sites, points,
    drills, failovers and failbacks; stored bytes measured now. A project's caller sees
    its own project; an admin every project, or ``project``."""
    ctx.authorize("haven:usage:get")
    report = engine.usage(start, end, projects=None if project is None else [project],
                          stored=stored, scope=ctx.scope)  # fmt: skip
    return s.UsageOut(
        start=report.start,
        end=report.end,
        stored_at=report.stored_at,
        projects=[s.ProjectUsageOut(**asdict(u)) for u in report.projects],
    )


def _quota(q: ProjectQuota) -> s.QuotaOut:
    return s.QuotaOut.model_validate(asdict(q))


@router.get("/quotas", name="quota:list")
def list_quotas(ctx: Ctx) -> s.QuotaList:
    ctx.authorize("haven:quota:list")
    return s.QuotaList(quotas=[_quota(q) for q in engine.list_quotas()])


@router.get("/quotas/{project}", name="quota:get")
def show_quota(project: Annotated[str, Path(pattern=PROJECT_PATTERN)], ctx: Ctx) -> s.QuotaOut:
    ctx.authorize("haven:quota:get")
    return _quota(engine.quota(project, ctx.scope))


@router.put("/quotas/{project}", name="quota:update")
def set_quota(
    project: Annotated[str, Path(pattern=PROJECT_PATTERN)],
    body: Annotated[s.QuotaUpdate, Body()],
    ctx: Ctx,
) -> s.QuotaOut:
    """Only the limits named in the body change; null makes one unlimited."""
    ctx.authorize("haven:quota:update")
    given = body.model_dump(include=body.model_fields_set)
    changes = {QuotaResource(k): v for k, v in given.items()}
    return _quota(engine.set_quota(project, changes))
