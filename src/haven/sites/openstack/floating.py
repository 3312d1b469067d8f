"""Floating IPs at the recovery site: one per captured (address, server, fixed IP).

Each captured floating IP is re-created on the mapped external network and associated
with the recovered server's port for the same NIC. The original address is kept when the
target's pool has it free (an unassociated floating IP of the project with that address is
reused: a failback finds the address it left behind); otherwise Neutron picks a new one.
Created addresses go to the ledger as ``floating_ip``, reused ones as ``floating_ip_assoc``
(cleanup only disassociates those). A drill creates none: the bubble has no external
network, and a public address must never point at a test copy.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openstack import exceptions as osexc
from openstack.connection import Connection

from haven.sites.openstack.errors import OpenStackSiteError
from haven.sites.openstack.model import AppInventory
from haven.sites.openstack.recovery import BootedServer, Ledger, Mapping, Missing, find_network


@dataclass(frozen=True, slots=True)
class FloatingIpResult:
    source_address: str
    address: str  # at the target
    server: str  # source server name
    port_id: str
    network: str  # target external network name
    kept: bool  # the original address was kept


def external_network(inv: AppInventory, address: str) -> str | None:
    """The source external network of a floating IP: captured with it, else the gateway
    network of the application's routers (older points captured only the address)."""
    name = inv.floating_ip_networks.get(address)
    if name:
        return name
    gateways = {r.external_network for r in inv.routers if r.external_network}
    return next(iter(sorted(gateways)), None)


def preflight(conn: Connection, inv: AppInventory, mapping: Mapping) -> list[Missing]:
    """External networks the floating IPs need and the target lacks (not creatable:
    an external network is the operator's)."""
    if not inv.floating_ips:
        return []
    have = {n.name for n in conn.network.networks(is_router_external=True)}
    out = []
    for name in sorted({external_network(inv, f[0]) or "?" for f in inv.floating_ips}):
        if mapping.net(name) not in have:
            out.append(Missing("external_network", mapping.net(name), False))
    return out


def restore(
    conn: Connection,
    inv: AppInventory,
    booted: Sequence[BootedServer],
    mapping: Mapping,
    ledger: Ledger,
) -> list[FloatingIpResult]:
    out = []
    by_source = {b.source_name: b for b in booted}
    for address, server, fixed_ip in inv.floating_ips:
        b = by_source.get(server)
        if b is None:
            continue  # the server is not part of this recovery
        src_net = external_network(inv, address)
        if src_net is None:
            raise OpenStackSiteError(f"floating IP {address}: no external network recorded")
        ext = conn.network.find_network(mapping.net(src_net), ignore_missing=False)
        port = _port_for(conn, inv, b, fixed_ip, mapping)
        fip, kept = _allocate(conn, ext, address, ledger, f"haven: {b.name} (was {address})")
        conn.network.update_ip(fip, port_id=port.id)
        out.append(
            FloatingIpResult(address, fip.floating_ip_address, server, port.id, ext.name, kept)
        )
    return out


def _port_for(
    conn: Connection, inv: AppInventory, b: BootedServer, fixed_ip: str, mapping: Mapping
) -> Any:
    """The recovered server's port for the NIC that held ``fixed_ip`` at the source."""
    ports = list(conn.network.ports(device_id=b.server_id))
    for p in ports:
        if any(ip["ip_address"] == fixed_ip for ip in p.fixed_ips):
            return p  # the fixed IP was kept
    rec = inv.server(b.source_name)
    nic = next((n for n in rec.nics if fixed_ip in n.fixed_ips), None)
    if nic is not None:
        net = find_network(conn, mapping.net(nic.network))
        for p in ports:
            if net is not None and p.network_id == net.id:
                return p
    if ports:
        return ports[0]
    raise OpenStackSiteError(f"server {b.name} has no port for floating IP of {fixed_ip}")


def _allocate(
    conn: Connection, ext: Any, address: str, ledger: Ledger, description: str
) -> tuple[Any, bool]:
    existing = next(iter(conn.network.ips(floating_ip_address=address)), None)
    if existing is not None:
        if (
            existing.floating_network_id == ext.id
            and not existing.port_id
            and existing.project_id == conn.current_project_id
        ):
            ledger.add("floating_ip_assoc", existing.id)
            return existing, True
    elif _in_pool(conn, ext, address):
        # asking for a given address is admin-only by default policy: fall back to any
        with contextlib.suppress(osexc.ForbiddenException, osexc.ConflictException):
            fip = conn.network.create_ip(floating_network_id=ext.id, floating_ip_address=address)
            ledger.add("floating_ip", fip.id)
            return fip, True
    fip = conn.network.create_ip(floating_network_id=ext.id, description=description)
    ledger.add("floating_ip", fip.id)
    return fip, False


def _in_pool(conn: Connection, ext: Any, address: str) -> bool:
    addr = ipaddress.ip_address(address)
    for sub in conn.network.subnets(network_id=ext.id):
        if addr not in ipaddress.ip_network(sub.cidr):
            continue
        pools = sub.allocation_pools or []
        if not pools:
            return True
        for p in pools:
            start, end = ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"])
            if start.version == addr.version and int(start) <= int(addr) <= int(end):
                return True
    return False
