"""The Haven REST API: one FastAPI app (``create_app``), served by ``haven api``.

``/`` lists the API versions; ``/v1`` holds the resources; the OpenAPI document is at
``/v1/openapi.json``. The guard middleware (body size, content type, nesting, request
id) runs before FastAPI parses anything; errors have one shape (``api/errors.py``).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from haven import __version__
from haven.api import errors
from haven.api.auth import KeystoneAuthenticator
from haven.api.deps import Services
from haven.api.middleware import GuardMiddleware
from haven.api.policy import Authorizer
from haven.api.routes import ROUTERS
from haven.api.settings import ApiSettings
from haven.domain.errors import HavenError
from haven.engine import api as engine


def create_app(settings: ApiSettings, *, start_engine: bool = False) -> FastAPI:
    """``start_engine``: launch the durable engine when the app starts (``haven api``:
    operations a previous process left unfinished are recovered then) and stop it at
    shutdown; otherwise it starts at the first submit."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_engine:
            engine.start_api_engine()
        try:
            yield
        finally:
            if start_engine:
                engine.stop_engine()

    app = FastAPI(
        title="Haven",
        summary="Disaster recovery as a service for OpenStack and KVM clouds",
        version=__version__,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    authenticator = KeystoneAuthenticator(settings.keystone, settings.token_cache_ttl)
    app.state.services = Services(
        authenticator,
        Authorizer(settings.policy_file),
        timedelta(seconds=settings.idempotency_ttl),
    )
    errors.install(app, authenticator.challenge)
    for router in ROUTERS:
        app.include_router(router, responses=errors.DOCUMENTED)
    app.add_middleware(
        GuardMiddleware, max_body=settings.max_body_bytes, max_depth=settings.max_json_depth
    )
    return app


def from_environment() -> FastAPI:
    """The app ``haven api`` serves (a uvicorn factory): settings from ``HAVEN_API_*``.
    A bad setting ends the process with its exit code and one line on stderr naming the
    setting, before the port is opened."""
    from haven.api.settings import from_environment as settings_from_environment

    try:
        return create_app(settings_from_environment(), start_engine=True)
    except HavenError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(int(exc.exit_code)) from None
