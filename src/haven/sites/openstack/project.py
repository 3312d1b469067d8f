"""What an application's servers depend on in their OpenStack project, read by name and
content (capture, at the protected site), and what a recovery region has (survey).

Capture reads, for the servers of a group: their flavors (as embedded in the server,
Nova >= 2.47), keypairs, ports (network, subnet, fixed IPs, MAC) and security groups, the
networks with their subnets, the project's routers on those subnets, the security groups
the ports use and those their rules name, the volume types of their disks, the floating
IPs on their ports and the project's role assignments (admin only: none otherwise).
Everything a project owns is looked up in the connection's project; shared and external
networks count too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from openstack import exceptions as osexc

from haven.domain.project import (
    AddressUse,
    FlavorDef,
    FloatingIpDef,
    FoundNetwork,
    FoundSubnet,
    IpRange,
    KeypairDef,
    NetworkDef,
    PortDef,
    ProjectSnapshot,
    RoleAssignment,
    Route,
    RouterDef,
    RuleDef,
    SecurityGroupDef,
    ServerPlacement,
    SiteSurvey,
    SubnetDef,
    SurveyRequest,
)


def capture(conn: Any, servers: Mapping[str, str]) -> ProjectSnapshot:
    """``servers``: member name -> server id (or unique name) in the connection's project."""
    net = conn.network
    pid = conn.current_project_id
    networks: dict[str, Any] = {}  # id -> network
    placements: list[ServerPlacement] = []
    flavors: dict[str, FlavorDef] = {}
    keypairs: dict[str, KeypairDef] = {}
    fips: list[FloatingIpDef] = []
    group_ids: set[str] = set()
    for member, sid in servers.items():
        s = conn.compute.get_server(sid)
        flavor = _flavor(s.flavor)
        flavors[flavor.name] = flavor
        if s.key_name and s.key_name not in keypairs:
            kp = conn.compute.get_keypair(s.key_name)
            keypairs[s.key_name] = KeypairDef(kp.name, kp.public_key, kp.type or "ssh")
        ports = sorted(net.ports(device_id=s.id), key=lambda p: (p.created_at or "", p.mac_address))
        port_defs = []
        groups: list[str] = []
        for port in ports:
            n = networks.get(port.network_id) or net.get_network(port.network_id)
            networks[n.id] = n
            ips = tuple(ip["ip_address"] for ip in port.fixed_ips)
            subnet = net.get_subnet(port.fixed_ips[0]["subnet_id"]).name if port.fixed_ips else None
            port_defs.append(PortDef(n.name, ips, subnet, port.mac_address))
            for gid in port.security_group_ids or ():
                if gid not in groups:
                    groups.append(gid)
            for fip in net.ips(port_id=port.id):
                ext = networks.get(fip.floating_network_id) or net.get_network(
                    fip.floating_network_id
                )
                networks[ext.id] = ext
                fips.append(
                    FloatingIpDef(fip.floating_ip_address, member, fip.fixed_ip_address, ext.name)
                )
        group_ids.update(groups)
        placements.append(
            ServerPlacement(
                server=member,
                flavor=flavor.name,
                keypair=s.key_name or None,
                security_groups=tuple(net.get_security_group(g).name for g in groups),
                ports=tuple(port_defs),
                volume_types=_volume_types(conn, s),
            )
        )
    nets = [_network(conn, n) for n in networks.values()]
    subnet_ids = {sid for n in networks.values() for sid in n.subnet_ids}
    return ProjectSnapshot(
        project=conn.current_project.name if conn.current_project else None,
        role_assignments=_roles(conn, pid),
        flavors=tuple(flavors.values()),
        keypairs=tuple(keypairs.values()),
        networks=tuple(sorted(nets, key=lambda n: n.name)),
        routers=tuple(_routers(conn, subnet_ids)),
        security_groups=_security_groups(conn, group_ids),
        volume_types=tuple(sorted({t for p in placements for t in p.volume_types.values()})),
        floating_ips=tuple(fips),
        servers=tuple(placements),
    )


def _flavor(f: Any) -> FlavorDef:
    return FlavorDef(
        f.original_name or f.name,
        f.vcpus,
        f.ram,
        f.disk or 0,
        f.ephemeral or 0,
        int(f.swap or 0),
        dict(f.extra_specs or {}),
    )


def _volume_types(conn: Any, s: Any) -> dict[str, str]:
    out = {}
    for att in conn.compute.volume_attachments(s):
        v = conn.block_storage.get_volume(att.volume_id)
        target = (att.device or "").rsplit("/", 1)[-1] or v.id
        if v.volume_type:
            out[target] = str(v.volume_type)
    return out


def _network(conn: Any, n: Any) -> NetworkDef:
    subnets = []
    for sid in n.subnet_ids:
        s = conn.network.get_subnet(sid)
        pools = tuple(IpRange(p["start"], p["end"]) for p in s.allocation_pools or [])
        subnets.append(
            SubnetDef(
                s.name,
                s.cidr,
                s.ip_version,
                s.gateway_ip,
                bool(s.is_dhcp_enabled),
                pools,
                tuple(s.dns_nameservers or []),
            )
        )
    return NetworkDef(
        n.name,
        tuple(sorted(subnets, key=lambda s: s.name)),
        n.mtu,
        bool(n.is_router_external),
        bool(n.is_shared),
    )


def _routers(conn: Any, subnet_ids: set[str]) -> list[RouterDef]:
    net = conn.network
    out = []
    for r in net.routers(project_id=conn.current_project_id):
        ifaces = sorted(
            net.get_subnet(ip["subnet_id"]).name
            for p in net.ports(device_id=r.id, device_owner="network:router_interface")
            for ip in p.fixed_ips
            if ip["subnet_id"] in subnet_ids
        )
        if not ifaces:
            continue
        gw = (r.external_gateway_info or {}).get("network_id")
        ext = net.get_network(gw).name if gw else None
        routes = tuple(Route(x["destination"], x["nexthop"]) for x in r.routes or [])
        out.append(RouterDef(r.name, ext, tuple(ifaces), routes))
    return sorted(out, key=lambda r: r.name)


def _security_groups(conn: Any, ids: set[str]) -> tuple[SecurityGroupDef, ...]:
    """The groups ``ids`` and every group their rules name, transitively."""
    todo, seen, out = sorted(ids), set(ids), []
    while todo:
        g = conn.network.get_security_group(todo.pop())
        rules = []
        for r in g.security_group_rules:
            remote = r.get("remote_group_id")
            if remote and remote not in seen:
                seen.add(remote)
                todo.append(remote)
            name = conn.network.get_security_group(remote).name if remote else None
            rules.append(
                RuleDef(
                    r["direction"],
                    r["ethertype"],
                    r.get("protocol"),
                    r.get("port_range_min"),
                    r.get("port_range_max"),
                    r.get("remote_ip_prefix"),
                    name,
                )
            )
        rules.sort(
            key=lambda x: tuple(
                str(v)
                for v in (
                    x.direction,
                    x.ethertype,
                    x.protocol,
                    x.port_min,
                    x.remote_ip_prefix,
                    x.remote_group,
                )
            )
        )
        out.append(SecurityGroupDef(g.name, g.description or "", tuple(rules)))
    return tuple(sorted(out, key=lambda g: g.name))


def _roles(conn: Any, project_id: str) -> tuple[RoleAssignment, ...]:
    """The project's (user, role) pairs; () when they cannot be read (needs admin)."""
    try:
        pairs = {
            RoleAssignment(a.user["name"], a.role["name"])
            for a in conn.identity.role_assignments(scope_project_id=project_id, include_names=True)
            if (a.user or {}).get("name") and (a.role or {}).get("name")
        }
    except osexc.SDKException:
        return ()
    return tuple(sorted(pairs, key=str))


# -- the recovery region ------------------------------------------------------------------------
def find_network(conn: Any, name: str) -> Any:
    """The project's network of that name, else a shared or external one; None if none."""
    pid = conn.current_project_id
    found = list(conn.network.networks(name=name))
    mine = [n for n in found if n.project_id == pid]
    public = [n for n in found if n.is_shared or n.is_router_external]
    return (mine or public or [None])[0]


def survey(conn: Any, req: SurveyRequest) -> SiteSurvey:
    pid = conn.current_project_id
    net = conn.network
    flavors = {f.name for f in conn.compute.flavors()}
    keypairs = {k.name for k in conn.compute.keypairs()}
    groups = {g.name for g in net.security_groups(project_id=pid)}
    routers = {r.name for r in net.routers(project_id=pid)}
    vtypes = {t.name for t in conn.block_storage.types()}
    networks = []
    by_name: dict[str, Any] = {}
    for name in req.networks:
        n = find_network(conn, name)
        if n is None:
            continue
        by_name[name] = n
        subs = tuple(FoundSubnet(s.name, s.cidr) for s in net.subnets(network_id=n.id))
        networks.append(FoundNetwork(name, bool(n.is_router_external), subs))
    used = []
    for name, ip in req.addresses:
        n = by_name.get(name)
        if n is None:
            continue
        for p in net.ports(network_id=n.id, fixed_ips=[f"ip_address={ip}"]):
            used.append(AddressUse(name, ip, p.name or f"port {p.id} ({p.device_owner})"))
    users, roles, assigned = _identity(conn, req, pid)
    return SiteSurvey(
        flavors=tuple(f for f in req.flavors if f in flavors),
        keypairs=tuple(k for k in req.keypairs if k in keypairs),
        security_groups=tuple(g for g in req.security_groups if g in groups),
        networks=tuple(networks),
        routers=tuple(r for r in req.routers if r in routers),
        volume_types=tuple(t for t in req.volume_types if t in vtypes),
        users=users,
        roles=roles,
        role_assignments=tuple(a for a in req.role_assignments if a in assigned),
        addresses_in_use=tuple(used),
    )


def _identity(
    conn: Any, req: SurveyRequest, pid: str
) -> tuple[tuple[str, ...], tuple[str, ...], set[RoleAssignment]]:
    if not req.role_assignments:
        return (), (), set()
    idn = conn.identity
    users = tuple(u for u in req.users if idn.find_user(u) is not None)
    roles = tuple(r for r in req.roles if idn.find_role(r) is not None)
    assigned = set()
    with contextlib.suppress(osexc.SDKException):
        for a in idn.role_assignments(scope_project_id=pid, include_names=True):
            if (a.user or {}).get("name") and (a.role or {}).get("name"):
                assigned.add(RoleAssignment(a.user["name"], a.role["name"]))
    return users, roles, assigned
