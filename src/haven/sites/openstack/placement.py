"""Servers placed into a recovered project: ports with fixed IPs and security groups, the
server with its flavor and keypair, typed volumes, floating IPs, and where a server answers
(the OpenStack side of the engine's ProjectServers and ServerAddresses roles).

Ports are named ``<server>-<n>`` (n: the NIC's position) and found by that name before one
is created, so a server definition interrupted by a crash reuses them. A floating IP
carries the engine's tag as its description: an interrupted attach finds it again. The
captured address is asked for when the pool has it (Neutron allows that to admins only by
default); otherwise Neutron picks one.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any

from openstack import exceptions as osexc

from haven.domain.inventory import DiskRole, ServerSpec, VolumeInfo
from haven.domain.project import (
    Created,
    FloatingIpRequest,
    FloatingIpResult,
    LedgerKind,
    PlacedServer,
    PlacedServerRequest,
    PortRequest,
)
from haven.sites.errors import SiteConflict, SiteInputError, SiteNotFound
from haven.sites.openstack.connection import wait_status
from haven.sites.openstack.project import find_network

GiB = 1024**3


def define(
    conn: Any,
    spec: ServerSpec,
    name: str,
    placement: PlacedServerRequest,
    volumes: dict[str, VolumeInfo],
) -> PlacedServer:
    """The server, created from its volumes and left SHUTOFF (Nova boots on create)."""
    cmp = conn.compute
    flavor = cmp.find_flavor(placement.flavor)
    if flavor is None:
        raise SiteNotFound(f"flavor {placement.flavor} not found")
    groups = [_group(conn, g) for g in placement.security_groups]
    ports = [_port(conn, f"{name}-{i}", r, groups) for i, r in enumerate(placement.ports)]
    bdm = []
    for d in spec.disks:
        if d.target not in volumes:
            raise SiteInputError(f"volumes.{d.target}", "no volume for this disk")
        boot = d.role == DiskRole.BOOT
        if boot:
            conn.block_storage.set_volume_bootable_status(volumes[d.target].id, True)
        bdm.append(
            {
                "uuid": volumes[d.target].id,
                "source_type": "volume",
                "destination_type": "volume",
                "delete_on_termination": False,
                "boot_index": 0 if boot else -1,
            }
        )
    kw: dict[str, Any] = {
        "name": name,
        "flavor_id": flavor.id,
        "block_device_mapping": bdm,
        "networks": [{"port": p.id} for p in ports] or "none",
    }
    if placement.keypair:
        kw["key_name"] = placement.keypair
    if spec.source_id:
        kw["metadata"] = {"haven:source": spec.source_id}
    s = cmp.create_server(**kw)
    s = wait_status(f"server {name}", lambda: cmp.get_server(s.id), {"ACTIVE"})
    cmp.stop_server(s)
    wait_status(f"server {name} stop", lambda: cmp.get_server(s.id), {"SHUTOFF"})
    return PlacedServer(str(s.id), tuple(Created(LedgerKind.PORT, p.id, p.name) for p in ports))


def _group(conn: Any, name: str) -> str:
    g = conn.network.find_security_group(name, project_id=conn.current_project_id)
    if g is None:
        raise SiteNotFound(f"security group {name} not found")
    return str(g.id)


def _port(conn: Any, name: str, r: PortRequest, groups: list[str]) -> Any:
    net = conn.network
    n = find_network(conn, r.network)
    if n is None:
        raise SiteNotFound(f"network {r.network} not found")
    found = next(iter(net.ports(name=name, network_id=n.id)), None)
    if found is not None:
        if found.device_id and found.device_owner.startswith("compute:"):
            raise SiteConflict(f"port {name} is bound to server {found.device_id}")
        return found
    kw: dict[str, Any] = {"network_id": n.id, "name": name, "security_group_ids": groups}
    subnet = None
    if r.subnet:
        subnet = next(iter(net.subnets(network_id=n.id, name=r.subnet)), None)
        if subnet is None:
            raise SiteNotFound(f"subnet {r.subnet} of {r.network} not found")
    if r.ip:
        fixed: dict[str, str] = {"ip_address": r.ip}
        if subnet is not None:
            fixed["subnet_id"] = subnet.id
        kw["fixed_ips"] = [fixed]
    elif subnet is not None:
        kw["fixed_ips"] = [{"subnet_id": subnet.id}]
    try:
        return net.create_port(**kw)
    except osexc.ConflictException as exc:
        raise SiteConflict(f"port {name}: {r.ip} on {r.network} is taken ({exc})") from exc


def create_typed_volume(conn: Any, name: str, size_bytes: int, volume_type: str) -> VolumeInfo:
    gib = max(1, -(-size_bytes // GiB))
    bs = conn.block_storage
    v = bs.create_volume(name=name, size=gib, volume_type=volume_type)
    v = wait_status(f"volume {name}", lambda: bs.get_volume(v.id), {"available"})
    return VolumeInfo(v.id, name, gib * GiB, "raw")


def attach_floating_ip(conn: Any, server_id: str, req: FloatingIpRequest) -> FloatingIpResult:
    net = conn.network
    ext = find_network(conn, req.network)
    if ext is None or not ext.is_router_external:
        raise SiteNotFound(f"external network {req.network} not found")
    ports = list(net.ports(device_id=server_id))
    port = next(
        (p for p in ports if any(ip["ip_address"] == req.fixed_ip for ip in p.fixed_ips)), None
    )
    if port is None:
        raise SiteNotFound(f"server {server_id} has no port with {req.fixed_ip or 'an address'}")
    fip = next(iter(net.ips(description=req.tag)), None)
    kept = fip is not None and fip.floating_ip_address == req.address
    if fip is None:
        fip, kept = _allocate(conn, ext, req)
    if fip.port_id != port.id:
        fip = net.update_ip(fip, port_id=port.id, fixed_ip_address=req.fixed_ip)
    created = (Created(LedgerKind.FLOATING_IP, fip.id, fip.floating_ip_address),)
    return FloatingIpResult(fip.floating_ip_address, kept, created)


def _allocate(conn: Any, ext: Any, req: FloatingIpRequest) -> tuple[Any, bool]:
    net = conn.network
    taken = next(iter(net.ips(floating_ip_address=req.address)), None)
    if taken is None and _in_pool(conn, ext, req.address):
        # asking for an address is admin-only by default policy: any address otherwise
        with contextlib.suppress(
            osexc.ForbiddenException, osexc.ConflictException, osexc.BadRequestException
        ):
            fip = net.create_ip(
                floating_network_id=ext.id, floating_ip_address=req.address, description=req.tag
            )
            return fip, True
    return net.create_ip(floating_network_id=ext.id, description=req.tag), False


def _in_pool(conn: Any, ext: Any, address: str) -> bool:
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return False
    for sub in conn.network.subnets(network_id=ext.id):
        if addr not in ipaddress.ip_network(sub.cidr):
            continue
        pools = sub.allocation_pools or []
        if not pools or any(
            int(ipaddress.ip_address(p["start"]))
            <= int(addr)
            <= int(ipaddress.ip_address(p["end"]))
            for p in pools
        ):
            return True
    return False


def server_addresses(conn: Any, server_id: str) -> tuple[str, ...]:
    """Floating addresses of the server's ports first, then their fixed IPs."""
    net = conn.network
    ports = list(net.ports(device_id=server_id))
    floating = [f.floating_ip_address for p in ports for f in net.ips(port_id=p.id)]
    fixed = [ip["ip_address"] for p in ports for ip in p.fixed_ips]
    return tuple(floating + fixed)
