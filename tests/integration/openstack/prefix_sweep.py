"""Remove what an interrupted earlier test run left at one region: only resources whose
name starts with the run's prefix (servers included), floating IPs whose description names
it, backups and snapshots whose names contain it. Other sessions share the lab, so nothing
else is touched (unlike oslab.sweep, which also removes servers named db/app/web and every
available snapshot). Lab only."""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any


def gone(find, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while find() is not None and time.monotonic() < deadline:
        time.sleep(1)


def _mentions(text: str | None, prefix: str) -> bool:
    """``prefix`` starts a word of ``text`` ("haven-p1-hnf12ab34-db-boot")."""
    return re.search(rf"(^|[^a-z0-9]){re.escape(prefix)}", text or "") is not None


def sweep(conn: Any, prefix: str) -> None:
    """What an interrupted earlier run of this module left (names starting with
    ``prefix``; floating IPs whose description names such a server)."""
    cmp, net, bs, idn = conn.compute, conn.network, conn.block_storage, conn.identity
    for f in net.ips():
        if _mentions(f.description, prefix):
            net.delete_ip(f, ignore_missing=True)
    servers = [s for s in cmp.servers(all_projects=True) if s.name.startswith(prefix)]
    for s in servers:
        cmp.delete_server(s, ignore_missing=True)
    for s in servers:
        gone(lambda s=s: cmp.find_server(s.id, all_projects=True))
    for b in sorted(bs.backups(all_projects=True), key=lambda b: b.created_at or "", reverse=True):
        if _mentions(b.name, prefix) and b.status in ("available", "error"):
            with contextlib.suppress(Exception):
                bs.delete_backup(b)
                gone(lambda b=b: bs.find_backup(b.id))
    for snap in bs.snapshots(all_projects=True):
        if _mentions(snap.name, prefix) and snap.status in ("available", "error"):
            with contextlib.suppress(Exception):
                bs.delete_snapshot(snap)
    for gs in bs.group_snapshots():
        if _mentions(gs.name, prefix):
            with contextlib.suppress(Exception):
                bs.delete_group_snapshot(gs)
    for g in bs.groups():  # the engine names a group's Cinder group haven-<group>
        if (g.name or "").startswith((prefix, f"haven-{prefix}")):
            with contextlib.suppress(Exception):
                bs.delete_group(g, delete_volumes=True)
    for v in bs.volumes(all_projects=True):
        if (v.name or "").startswith(prefix) and v.status in ("available", "error"):
            with contextlib.suppress(Exception):
                bs.delete_volume(v)
    for r in net.routers():
        if r.name.startswith(prefix):
            for p in net.ports(device_id=r.id, device_owner="network:router_interface"):
                with contextlib.suppress(Exception):
                    net.remove_interface_from_router(r, port=p.id)
            with contextlib.suppress(Exception):
                net.delete_router(r)
    for p in net.ports():
        if p.name.startswith(prefix) and not p.device_id:
            net.delete_port(p, ignore_missing=True)
    for n in net.networks():
        if n.name.startswith(prefix):
            with contextlib.suppress(Exception):
                net.delete_network(n)
    for g in net.security_groups():
        if g.name.startswith(prefix):
            with contextlib.suppress(Exception):
                net.delete_security_group(g)
    for k in cmp.keypairs():
        if k.name.startswith(prefix):
            cmp.delete_keypair(k)
    for f in cmp.flavors():
        if f.name.startswith(prefix):
            cmp.delete_flavor(f)
    for p in idn.projects():
        if p.name.startswith(prefix):
            idn.delete_project(p, ignore_missing=True)
    for u in idn.users():
        if u.name.startswith(prefix):
            idn.delete_user(u, ignore_missing=True)


def counts(conn: Any, prefix: str) -> dict[str, int]:
    """Resource counts at one region, limited to ``prefix`` (all projects): "cleanup leaves
    things as they were" must not depend on what other sessions do in the shared lab."""
    net, bs = conn.network, conn.block_storage
    nets = [n for n in net.networks() if n.name.startswith(prefix)]
    net_ids = {n.id for n in nets}
    projects = [p for p in conn.identity.projects() if p.name.startswith(prefix)]
    return {
        "servers": sum(s.name.startswith(prefix) for s in conn.compute.servers(all_projects=True)),
        "volumes": sum((v.name or "").startswith(prefix) for v in bs.volumes(all_projects=True)),
        "volume_types": sum(t.name.startswith(prefix) for t in bs.types()),
        "networks": len(nets),
        "subnets": sum(s.name.startswith(prefix) for s in net.subnets()),
        "routers": sum(r.name.startswith(prefix) for r in net.routers()),
        "ports": sum(p.network_id in net_ids or p.name.startswith(prefix) for p in net.ports()),
        "security_groups": sum(g.name.startswith(prefix) for g in net.security_groups()),
        "keypairs": sum(k.name.startswith(prefix) for k in conn.compute.keypairs()),
        "flavors": sum(f.name.startswith(prefix) for f in conn.compute.flavors()),
        "floating_ips": sum(_mentions(f.description, prefix) for f in net.ips()),
        "projects": len(projects),
        "project_security_groups": sum(
            1 for p in projects for _g in net.security_groups(project_id=p.id)
        ),
    }
