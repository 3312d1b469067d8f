"""``/v1/keys/{repository}``: a project registers the Barbican secret that holds its data
key for a repository (docs/keys.md). The key itself never passes through Haven's API:
the tenant stores it in its own Barbican project and grants Haven's service user read
access through the secret's ACL; this records only the reference. Repositories whose
keys Haven makes itself (``key_store: local``) refuse it (422, naming the field)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from haven.api import schemas as s
from haven.api.deps import Ctx
from haven.engine import api as engine

router = APIRouter(prefix="/v1", tags=["keys"])
PROJECT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


@router.put("/keys/{repository}", name="key:register")
def register_key(
    repository: Annotated[str, Path(pattern=s.NAME_PATTERN, max_length=63)],
    body: Annotated[s.KeyRegistration, Body()],
    ctx: Ctx,
    project: Annotated[str | None, Query(pattern=PROJECT_PATTERN)] = None,
) -> s.KeyOut:
    """The caller's project's key (an admin may name ``project``). Replacing a key makes
    the data already under the old one unreadable until it is registered again."""
    ctx.authorize("haven:key:register")
    owner = project or ctx.caller.project_id
    ref = engine.register_project_key(repository, owner, body.secret_ref, ctx.scope)
    return s.KeyOut(repository=repository, project=owner, key=ref)
