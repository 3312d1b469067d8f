"""The target project and its users' role assignments, created or mapped at recovery.

``Mapping.project`` names the project to recover into (None: the connection's own). When
it does not exist it is created (in the recovering user's project domain) and the captured
(user, role) assignments of the source project are re-created there; both go to the ledger
so a drill's cleanup removes them. Users and roles are matched by name and never created:
a missing user or role blocks the recovery in preflight (identity is the operator's).
The recovery then runs on a connection scoped to that project, so everything it creates
belongs to the project.
"""

from __future__ import annotations

from typing import Any

from openstack.connection import Connection

from haven.sites.openstack.errors import PreflightFailed
from haven.sites.openstack.model import AppInventory
from haven.sites.openstack.recovery import Ledger, Mapping, Missing


def preflight(conn: Connection, inv: AppInventory, mapping: Mapping) -> list[Missing]:
    if not mapping.project:
        return []
    out: list[Missing] = []
    project = _find_project(conn, mapping.project)
    if project is None:
        out.append(Missing("project", mapping.project, True))
    have = _assignments(conn, project.id) if project is not None else set()
    for user, role in inv.role_assignments:
        u, r = conn.identity.find_user(user), conn.identity.find_role(role)
        if u is None:
            out.append(Missing("user", user, False))
        if r is None:
            out.append(Missing("role", role, False))
        if (user, role) not in have:
            out.append(
                Missing("role_assignment", f"{user}:{role}", u is not None and r is not None)
            )
    return out


def project_id(conn: Connection, mapping: Mapping) -> str:
    """The target project's id: the connection's own when none is mapped, "" when the
    mapped project does not exist yet."""
    if not mapping.project:
        return str(conn.current_project_id)
    project = _find_project(conn, mapping.project)
    return str(project.id) if project is not None else ""


def ensure_project(
    conn: Connection, inv: AppInventory, mapping: Mapping, ledger: Ledger
) -> tuple[Connection, list[str]]:
    """The connection to recover with (scoped to the mapped project) and notes on what
    was done for it. Call after :func:`preflight` passed."""
    if not mapping.project:
        return conn, []
    notes = []
    project = _find_project(conn, mapping.project)
    if project is None:
        project = conn.identity.create_project(
            name=mapping.project,
            domain_id=_domain_id(conn),
            description=f"Haven recovery of {inv.project or 'a project'} from {inv.site}",
        )
        ledger.add("project", project.id)
        notes.append(f"created project {mapping.project}")
    have = _assignments(conn, project.id)
    for user, role in inv.role_assignments:
        if (user, role) in have:
            continue
        _grant(conn, project.id, user, role, ledger)
        notes.append(f"assigned role {role} to {user} on {mapping.project}")
    me = str(conn.current_user_id)
    mine = {u for u, _r in _assignments(conn, project.id, by_id=True)}
    if me not in mine:
        # the recovering user needs a role to act in the project: the ones it holds on
        # its own project (typically admin), recorded like the others
        own = {
            a.role["id"]
            for a in conn.identity.role_assignments(
                user_id=me, scope_project_id=conn.current_project_id
            )
        }
        if not own:
            raise PreflightFailed([f"a role for the recovering user on {mapping.project}"])
        for rid in sorted(own):
            conn.identity.assign_project_role_to_user(project.id, me, rid)
            ledger.add("role_assignment", f"{project.id}:{me}:{rid}")
        notes.append(f"gave the recovering user its own roles on {mapping.project}")
    scoped = conn.connect_as_project(
        {"id": project.id, "name": project.name, "domain_id": project.domain_id}
    )
    return scoped, notes


def _grant(conn: Connection, project_id: str, user: str, role: str, ledger: Ledger) -> None:
    u = conn.identity.find_user(user, ignore_missing=False)
    r = conn.identity.find_role(role, ignore_missing=False)
    conn.identity.assign_project_role_to_user(project_id, u.id, r.id)
    ledger.add("role_assignment", f"{project_id}:{u.id}:{r.id}")


def _domain_id(conn: Connection) -> str:
    """The recovering user's project's domain (the token's project carries no domain)."""
    return str(conn.identity.get_project(str(conn.current_project_id)).domain_id)


def _find_project(conn: Connection, name: str) -> Any:
    return next(iter(conn.identity.projects(name=name, domain_id=_domain_id(conn))), None)


def _assignments(conn: Connection, project_id: str, by_id: bool = False) -> set[tuple[str, str]]:
    out = set()
    for a in conn.identity.role_assignments(scope_project_id=project_id, include_names=True):
        user, role = a.user or {}, a.role or {}
        key = "id" if by_id else "name"
        if user.get(key) and role.get(key):
            out.add((user[key], role[key]))
    return out
