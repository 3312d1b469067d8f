"""Two tenants in the engine's fake lab (``tests/unit/engine/lab.py``): group ``shop``
belongs to project ``p1``; group ``mall`` (project ``p2``) protects servers ``db2`` and
``app2`` at site a whose disks hold what ``db`` and ``app`` hold, so the repository
shares their chunks between the two projects' points."""

from __future__ import annotations

import contextlib
from typing import Any

from haven.domain.errors import ConflictError
from haven.engine import services
from haven.engine.apply import ApplyResult, apply_spec
from haven.specs import load_spec
from tests.unit.engine.lab import Lab, edited_spec, server_spec

TWINS = {"db2": "db", "app2": "app"}  # mall's server -> the shop server it copies


def mall_group(project: str | None = "p2", name: str = "mall") -> dict[str, Any]:
    group: dict[str, Any] = {
        "name": name, "source": "site-a", "target": "site-b", "policy": "gold",
        "repository": "offsite", "members": [{"server": s} for s in TWINS],
    }  # fmt: skip
    if project is not None:
        group["project"] = project
    return group


def add_twin_servers(lab: Lab) -> None:
    a = lab.site("site-a")
    for name, like in TWINS.items():
        sid = a.add_server(server_spec(name))
        a.write_disk(sid, "vda", 0, f"{like} initial data".encode())


def apply_groups(lab: Lab, *groups: dict[str, Any], shop_project: str | None = "p1") -> ApplyResult:
    """Apply the lab's spec with shop in ``shop_project`` and ``groups`` added."""

    def edit(data: dict[str, Any]) -> None:
        if shop_project is not None:
            data["groups"][0]["project"] = shop_project
        data["groups"] += list(groups)

    result = apply_spec(services.catalog(), load_spec(edited_spec(lab, edit)))
    project_keys(*{p for p in [shop_project, *(g.get("project") for g in groups)] if p})
    return result


def project_keys(*projects: str, repository: str = "offsite") -> None:
    """Each project's data key in the repository's (local) key store: a project's data is
    kept under its own key, made by the operator before its first point (docs/keys.md)."""
    from haven.engine import api

    for project in projects:
        with contextlib.suppress(ConflictError):  # made already
            api.create_project_key(repository, project)


def two_projects(lab: Lab) -> None:
    add_twin_servers(lab)
    apply_groups(lab, mall_group())
    project_keys("p1", "p2")
