"""Failback on the Cinder-backup path: bring an application that failed over to the
recovery region (DR) back to its home region, as a planned migration.

1. **seed** (DR copy running): a reverse point of the DR volumes, snapshot -> Cinder backup
   into the shared backup store -> exported records. It is **full**: a Cinder incremental
   needs a parent backup *of the same volume*, and the DR volumes are new volumes restored
   at failover (the forward chain belongs to the home volumes' ids). Taking it while the
   application still runs keeps the bulk of the copy out of the downtime.
2. **stop** the DR servers (downtime starts), then the **final** point: **incremental** on
   the seed's backups (same DR volumes), so only what changed since the seed moves while
   the application is down. Servers are stopped, so per-volume snapshots are consistent.
3. at home: servers of the original application that still exist (stale: superseded by
   the DR copy) are deleted, their volumes kept (``delete_on_termination`` is cleared
   first) and their leftover ports removed so the original fixed IPs are free.
4. restore: onto the **original volumes** where they still exist and are available (their
   ids, types and forward backup chains stay, so the next home protection can continue
   incrementally: Cinder's incremental compares block hashes with the parent, whatever
   wrote the volume), else onto new volumes; boot in plan order with the original names
   and fixed IPs; floating IPs (the address left behind by the stale server is reused).
5. retire the DR copy only after every home server is ACTIVE: stop (done), delete the
   servers, their ports and floating IPs; delete the DR volumes only when asked
   (``delete_dr_volumes``), else keep them (they are the fallback if home misbehaves).

If anything fails between stop and retire, the DR servers are started again and what the
home recovery created is removed; the DR copy is then unchanged and still authoritative.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from openstack import exceptions as osexc
from openstack.connection import Connection

from haven.sites.openstack import inventory, native, recovery
from haven.sites.openstack.connection import wait, wait_status
from haven.sites.openstack.errors import PreflightFailed
from haven.sites.openstack.model import AppInventory, ServerRec

SOURCE = "haven:source"  # metadata Haven sets on recovered servers and volumes


@dataclass
class FailbackResult:
    seed: native.ProtectedPoint
    final: native.ProtectedPoint
    home: native.RecoveryResult
    restored_into: dict[native.Target, str]  # restored onto the original volume
    stale_deleted: list[str]  # home servers superseded by the DR copy
    retired_servers: list[str]  # DR servers deleted
    dr_volumes_deleted: list[str]
    dr_volumes_kept: list[str]
    downtime_s: float  # DR servers stopping -> last home server ACTIVE
    duration_s: float
    timings: dict[str, float] = field(default_factory=dict)


def seed(
    conn_dr: Connection, dr_server_ids: Sequence[str], point_id: str, site: str = "dr"
) -> native.ProtectedPoint:
    """The full reverse point, taken while the DR copy still runs."""
    return native.protect(conn_dr, site, dr_server_ids, point_id, "", prefer_group=False)


def failback(
    conn_dr: Connection,
    conn_home: Connection,
    dr_server_ids: Sequence[str],
    stages: Sequence[Sequence[str]],
    original: AppInventory,
    point_id: str,
    mapping: recovery.Mapping | None = None,
    seed_point: native.ProtectedPoint | None = None,
    delete_dr_volumes: bool = False,
    replace_stale: bool = True,
    site: str = "dr",
) -> FailbackResult:
    """Move the application from ``conn_dr`` back home to ``conn_home``.

    ``original`` is the home inventory the failover restored (its point's inventory): it
    names the servers and volumes to return to. ``mapping`` maps DR names to home names
    (typically the failover's mapping ``.inverse()``). ``stages`` use the original names.
    """
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    mapping = mapping or recovery.Mapping()
    # 0. preflight at home with the DR inventory under home names, before touching anything
    live = _home_names(inventory.capture(conn_dr, site, dr_server_ids), original)
    missing = native.preflight(conn_home, live, mapping)
    recovery.check(missing, mapping)
    stale = [s for s in original.servers if conn_home.compute.find_server(s.source_id)]
    if stale and not replace_stale:
        raise PreflightFailed([f"home server {s.name} ({s.source_id}) still exists" for s in stale])
    timings["preflight"] = time.monotonic() - t0
    # 1. seed
    if seed_point is None:
        seed_point = seed(conn_dr, dr_server_ids, f"{point_id}-seed", site)
    timings["seed"] = time.monotonic() - t0
    # 2. stop, final point
    t_stop = time.monotonic()
    _stop(conn_dr, dr_server_ids)
    timings["stop"] = time.monotonic() - t0
    home: native.RecoveryResult | None = None
    try:
        final = native.protect(
            conn_dr, site, dr_server_ids, point_id, "", previous=seed_point, prefer_group=False
        )
        timings["final_point"] = time.monotonic() - t0
        # 3. stale servers at home
        stale_deleted = _delete_stale(conn_home, stale)
        timings["stale"] = time.monotonic() - t0
        # 4. restore and boot at home
        point = replace(final, inventory=_home_names(final.inventory, original))
        into = _original_volumes(conn_home, point.inventory, stale_deleted)
        home = native.recover(conn_home, point, stages, mapping, into=into)
        timings["home"] = time.monotonic() - t0
    except Exception as exc:
        ledger = home.ledger if home else getattr(exc, "ledger", None)
        if ledger is not None:
            recovery.cleanup(conn_home, ledger)
        for sid in dr_server_ids:
            with contextlib.suppress(osexc.SDKException):
                conn_dr.compute.start_server(sid)
        raise
    downtime = time.monotonic() - t_stop
    # 5. retire the DR copy
    deleted, kept = _retire(conn_dr, dr_server_ids, delete_dr_volumes)
    timings["retire"] = time.monotonic() - t0
    return FailbackResult(
        seed_point,
        final,
        home,
        into,
        stale_deleted,
        list(dr_server_ids),
        deleted,
        kept,
        downtime,
        time.monotonic() - t0,
        timings,
    )


def _home_names(inv: AppInventory, original: AppInventory) -> AppInventory:
    """The DR inventory with the original server and volume names (found through the
    ``haven:source`` metadata the failover set); each volume's ``source_id`` stays the DR
    volume's, which is what the point's backups are keyed by."""
    by_server = {s.source_id: s for s in original.servers}
    by_volume = {v.source_id: v for s in original.servers for v in s.volumes}
    names: dict[str, str] = {}
    servers = []
    for s in inv.servers:
        orig = by_server.get(s.metadata.get(SOURCE, ""))
        name = orig.name if orig else s.name
        names[s.name] = name
        vols = tuple(
            replace(v, name=by_volume[v.metadata[SOURCE]].name)
            if v.metadata.get(SOURCE) in by_volume
            else v
            for v in s.volumes
        )
        meta = {k: v for k, v in s.metadata.items() if k != SOURCE}
        servers.append(replace(s, name=name, volumes=vols, metadata=meta))
    # floating IPs go back to the home addresses: the original's for the servers it had
    # (the DR addresses came from the DR pool), the DR ones for servers it did not
    home = set(names.values())
    fips = tuple(f for f in original.floating_ips if f[1] in home) + tuple(
        (a, names.get(srv, srv), ip)
        for a, srv, ip in inv.floating_ips
        if names.get(srv, srv) not in {f[1] for f in original.floating_ips}
    )
    fip_nets = {**inv.floating_ip_networks, **original.floating_ip_networks}
    return replace(inv, servers=tuple(servers), floating_ips=fips, floating_ip_networks=fip_nets)


def _stop(conn: Connection, server_ids: Sequence[str], timeout: float = 600) -> None:
    for sid in server_ids:
        if conn.compute.get_server(sid).status != "SHUTOFF":
            conn.compute.stop_server(sid)
    for sid in server_ids:
        wait_status(
            f"server {sid} stopping",
            lambda sid=sid: conn.compute.get_server(sid),
            {"SHUTOFF"},
            timeout=timeout,
        )


def _delete_stale(conn: Connection, stale: Sequence[ServerRec], timeout: float = 600) -> list[str]:
    """Delete superseded home servers; keep their volumes; free their ports' fixed IPs."""
    cmp = conn.compute
    ports: list[str] = []
    for s in stale:
        srv = cmp.get_server(s.source_id)
        for att in cmp.volume_attachments(srv):
            if getattr(att, "delete_on_termination", False):
                # Nova >= 2.85 updates the flag in place; the volume must survive the server
                cmp.put(
                    f"/servers/{srv.id}/os-volume_attachments/{att.volume_id}",
                    json={
                        "volumeAttachment": {
                            "volumeId": att.volume_id,
                            "delete_on_termination": False,
                        }
                    },
                    microversion="2.85",
                ).raise_for_status()
        ports += [p.id for p in conn.network.ports(device_id=srv.id)]
        cmp.delete_server(srv)
    for s in stale:
        wait(
            f"stale server {s.name} deleted",
            lambda s=s: True if cmp.find_server(s.source_id) is None else None,
            timeout,
        )
    for pid in ports:
        conn.network.delete_port(pid, ignore_missing=True)
    return [s.source_id for s in stale]


def _original_volumes(
    conn: Connection, inv: AppInventory, freed: Sequence[str]
) -> dict[native.Target, str]:
    """Original home volumes (by the DR volume's ``haven:source``) that can be restored
    onto: they exist, are large enough and are available, or become so as the detach
    from a deleted stale server (``freed``) completes."""
    bs = conn.block_storage
    out = {}
    for s in inv.servers:
        for v in s.volumes:
            oid = v.metadata.get(SOURCE)
            vol = bs.find_volume(oid) if oid else None
            if vol is None or vol.size < v.size_gib:
                continue
            if vol.status != "available" and all(
                a.get("server_id") in freed for a in vol.attachments or []
            ):
                vol = wait_status(
                    f"volume {oid} detaching",
                    lambda oid=oid: bs.get_volume(oid),
                    {"available"},
                    timeout=300,
                )
            if vol.status == "available":
                out[(s.name, v.name)] = vol.id
    return out


def _retire(
    conn: Connection, server_ids: Sequence[str], delete_volumes: bool
) -> tuple[list[str], list[str]]:
    """Delete the (stopped) DR servers, their ports and floating IPs; their volumes only
    when ``delete_volumes``. Returns (deleted volume ids, kept volume ids)."""
    cmp, net, bs = conn.compute, conn.network, conn.block_storage
    vols: list[str] = []
    ports: list[Any] = []
    for sid in server_ids:
        srv = cmp.get_server(sid)
        vols += [a.volume_id for a in cmp.volume_attachments(srv)]
        ports += list(net.ports(device_id=sid))
    for p in ports:
        for fip in net.ips(port_id=p.id):
            net.delete_ip(fip, ignore_missing=True)
    for sid in server_ids:
        cmp.delete_server(sid, ignore_missing=True)
    for sid in server_ids:
        wait(
            f"DR server {sid} deleted",
            lambda sid=sid: True if cmp.find_server(sid) is None else None,
            600,
        )
    for p in ports:
        net.delete_port(p.id, ignore_missing=True)
    if not delete_volumes:
        return [], vols
    for vid in vols:
        vol = wait_status(
            f"volume {vid}", lambda vid=vid: bs.get_volume(vid), {"available"}, timeout=300
        )
        bs.delete_volume(vol)
    for vid in vols:
        wait(
            f"volume {vid} deleted",
            lambda vid=vid: True if bs.find_volume(vid) is None else None,
            600,
        )
    return vols, []
