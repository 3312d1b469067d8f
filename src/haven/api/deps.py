"""Per-request dependencies: the authenticated caller, the policy check, the scope.

Order for every ``/v1`` route: authenticate (401/503), then the route's policy rule (403),
then the engine in the caller's scope (another project's object: 404)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from haven.api.auth import Caller, KeystoneAuthenticator
from haven.api.policy import Authorizer
from haven.engine.scope import Scope

ALL_PROJECTS_RULE = "haven:all_projects"


@dataclass(frozen=True)
class Services:
    """What the app holds for its requests (``app.state.services``)."""

    authenticator: KeystoneAuthenticator
    authorizer: Authorizer
    idempotency_ttl: timedelta  # how long an Idempotency-Key answers with its operation


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


# documented in the OpenAPI document as the API's security scheme; checked by Keystone
TOKEN_HEADER = APIKeyHeader(
    name="X-Auth-Token", auto_error=False, description="A Keystone token scoped to your project"
)


def caller(request: Request, token: Annotated[str | None, Depends(TOKEN_HEADER)]) -> Caller:
    return services(request).authenticator.authenticate(token)


@dataclass(frozen=True)
class Context:
    caller: Caller
    authorizer: Authorizer
    services: Services

    def authorize(self, rule: str) -> None:
        self.authorizer.authorize(rule, self.caller)

    def allowed(self, rule: str) -> bool:
        return self.authorizer.allowed(rule, self.caller)

    @property
    def scope(self) -> Scope:
        """Every project for a caller the all_projects rule allows (admin), else its own."""
        if self.allowed(ALL_PROJECTS_RULE):
            return Scope(self.caller.project_id, all_projects=True)
        return Scope.of(self.caller.project_id)


def context(request: Request, who: Annotated[Caller, Depends(caller)]) -> Context:
    svc = services(request)
    return Context(who, svc.authorizer, svc)


Ctx = Annotated[Context, Depends(context)]
