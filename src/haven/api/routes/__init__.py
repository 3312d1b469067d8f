"""The API's routers, mounted in this order by ``haven.api.app``. A new resource is one
module with a ``router`` (prefix ``/v1``) listed here (e.g. usage, quotas)."""

from __future__ import annotations

from fastapi import APIRouter

from haven.api.routes import keys, lifecycle, meta, operations, points, resources, usage

ROUTERS: tuple[APIRouter, ...] = (
    meta.router,
    resources.router,
    lifecycle.router,
    points.router,
    operations.router,
    usage.router,
    keys.router,
)
