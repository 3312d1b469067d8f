"""Creating (``ensure``) and removing (``remove``) one piece of project infrastructure in
the connection's project: the OpenStack side of the engine's ProjectInfrastructure role.

``ensure`` finds the resource by name (and each of its parts: a network's subnets, a
router's interfaces, a security group's rules) before it creates anything, so calling it
again after a crash creates no duplicate. It returns the resource and its parts, found or
created: the engine records them all (it asks only for what its preflight found missing).
A security group whose rules name a group not there yet creates that group, empty (its
own step then finds it and adds its rules).
"""

from __future__ import annotations

import contextlib
from typing import Any

from openstack import exceptions as osexc

from haven.domain.project import (
    Created,
    FlavorDef,
    InfraItem,
    KeypairDef,
    LedgerKind,
    NetworkDef,
    RoleAssignment,
    RouterDef,
    RuleDef,
    SecurityGroupDef,
    SubnetDef,
)
from haven.sites.errors import SiteInputError, SiteNotFound
from haven.sites.openstack.project import find_network

K = LedgerKind


def ensure(conn: Any, item: InfraItem) -> tuple[Created, ...]:
    d = item.definition
    if item.kind is K.FLAVOR and isinstance(d, FlavorDef):
        return (_flavor(conn, item.name, d),)
    if item.kind is K.KEYPAIR and isinstance(d, KeypairDef):
        if conn.compute.find_keypair(item.name) is None:
            conn.compute.create_keypair(name=item.name, public_key=d.public_key)
        return (Created(K.KEYPAIR, item.name, item.name),)
    if item.kind is K.VOLUME_TYPE:
        t = conn.block_storage.find_type(item.name) or conn.block_storage.create_type(
            name=item.name
        )
        return (Created(K.VOLUME_TYPE, t.id, item.name),)
    if item.kind is K.NETWORK and isinstance(d, NetworkDef):
        return _network(conn, item.name, d)
    if item.kind is K.ROUTER and isinstance(d, RouterDef):
        return (_router(conn, item.name, d),)
    if item.kind is K.SECURITY_GROUP and isinstance(d, SecurityGroupDef):
        return _security_group(conn, item.name, d)
    if item.kind is K.ROLE_ASSIGNMENT and isinstance(d, RoleAssignment):
        return (_role(conn, d),)
    raise SiteInputError("item", f"cannot create a {item.kind.value} from {type(d).__name__}")


def _flavor(conn: Any, name: str, d: FlavorDef) -> Created:
    f = conn.compute.find_flavor(name)
    if f is None:
        f = conn.compute.create_flavor(
            name=name,
            vcpus=d.vcpus,
            ram=d.ram_mib,
            disk=d.disk_gib,
            ephemeral=d.ephemeral_gib,
            swap=d.swap_mib or 0,
        )
    if d.extra_specs and dict(conn.compute.fetch_flavor_extra_specs(f).extra_specs or {}) != (
        d.extra_specs
    ):
        conn.compute.create_flavor_extra_specs(f, d.extra_specs)
    return Created(K.FLAVOR, f.id, name)


def _network(conn: Any, name: str, d: NetworkDef) -> tuple[Created, ...]:
    net, pid = conn.network, conn.current_project_id
    n = net.find_network(name, project_id=pid)
    if n is None:
        kw: dict[str, Any] = {"name": name, "description": "Haven: recovered"}
        if d.mtu:
            kw["mtu"] = d.mtu
        n = net.create_network(**kw)
    out = [Created(K.NETWORK, n.id, name)]
    have = {s.name: s for s in net.subnets(network_id=n.id)}
    for s in d.subnets:
        sub = have.get(s.name) or net.create_subnet(**_subnet_args(n.id, s))
        out.append(Created(K.SUBNET, sub.id, s.name))
    return tuple(out)


def _subnet_args(network_id: str, s: SubnetDef) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "network_id": network_id,
        "name": s.name,
        "cidr": s.cidr,
        "ip_version": s.ip_version,
        "gateway_ip": s.gateway_ip,
        "is_dhcp_enabled": s.dhcp,
    }
    if s.pools:
        kw["allocation_pools"] = [{"start": p.start, "end": p.end} for p in s.pools]
    if s.dns:
        kw["dns_nameservers"] = list(s.dns)
    return kw


def _router(conn: Any, name: str, d: RouterDef) -> Created:
    net, pid = conn.network, conn.current_project_id
    r = net.find_router(name, project_id=pid)
    if r is None:
        kw: dict[str, Any] = {"name": name}
        if d.gateway:
            ext = find_network(conn, d.gateway)
            if ext is None or not ext.is_router_external:
                raise SiteNotFound(f"external network {d.gateway} not found")
            kw["external_gateway_info"] = {"network_id": ext.id}
        r = net.create_router(**kw)
    attached = {
        ip["subnet_id"]
        for p in net.ports(device_id=r.id, device_owner="network:router_interface")
        for ip in p.fixed_ips
    }
    for sname in d.interfaces:
        sub = next(iter(net.subnets(name=sname, project_id=pid)), None)
        if sub is None:
            raise SiteNotFound(f"subnet {sname} (interface of router {name}) not found")
        if sub.id not in attached:
            net.add_interface_to_router(r, subnet_id=sub.id)
    if d.routes and not r.routes:
        net.update_router(
            r, routes=[{"destination": x.destination, "nexthop": x.nexthop} for x in d.routes]
        )
    return Created(K.ROUTER, r.id, name)


def _security_group(conn: Any, name: str, d: SecurityGroupDef) -> tuple[Created, ...]:
    net, pid = conn.network, conn.current_project_id
    out: list[Created] = []
    g = net.find_security_group(name, project_id=pid)
    if g is None:
        g = net.create_security_group(name=name, description=d.description)
        for r in g.security_group_rules:  # Neutron's default egress rules: copy as captured
            net.delete_security_group_rule(r["id"], ignore_missing=True)
        g = net.get_security_group(g.id)
    out.append(Created(K.SECURITY_GROUP, g.id, name))
    have = {_rule_key(r, conn) for r in g.security_group_rules}
    for rule in d.rules:
        kw: dict[str, Any] = {
            "security_group_id": g.id,
            "direction": rule.direction,
            "ether_type": rule.ethertype,
            "protocol": rule.protocol,
            "port_range_min": rule.port_min,
            "port_range_max": rule.port_max,
            "remote_ip_prefix": rule.remote_ip_prefix,
        }
        if rule.remote_group:
            remote = net.find_security_group(rule.remote_group, project_id=pid)
            if remote is None:  # named by this rule, created by its own step later
                remote = net.create_security_group(name=rule.remote_group, description="")
                for r in remote.security_group_rules:
                    net.delete_security_group_rule(r["id"], ignore_missing=True)
                out.append(Created(K.SECURITY_GROUP, remote.id, rule.remote_group))
            kw["remote_group_id"] = remote.id
        if _def_key(rule) in have:
            continue
        with contextlib.suppress(osexc.ConflictException):  # the same rule, made meanwhile
            net.create_security_group_rule(**kw)
    return tuple(out)


def _rule_key(r: dict[str, Any], conn: Any) -> tuple[object, ...]:
    remote = r.get("remote_group_id")
    name = conn.network.get_security_group(remote).name if remote else None
    return (
        r["direction"],
        r["ethertype"],
        r.get("protocol"),
        r.get("port_range_min"),
        r.get("port_range_max"),
        r.get("remote_ip_prefix"),
        name,
    )


def _def_key(r: RuleDef) -> tuple[object, ...]:
    return (
        r.direction,
        r.ethertype,
        r.protocol,
        r.port_min,
        r.port_max,
        r.remote_ip_prefix,
        r.remote_group,
    )


def _role(conn: Any, a: RoleAssignment) -> Created:
    idn, pid = conn.identity, str(conn.current_project_id)
    user = idn.find_user(a.user, ignore_missing=False)
    role = idn.find_role(a.role, ignore_missing=False)
    idn.assign_project_role_to_user(pid, user.id, role.id)  # a PUT: assigning twice is fine
    return Created(K.ROLE_ASSIGNMENT, f"{pid}:{user.id}:{role.id}", str(a))


def remove(conn: Any, kind: LedgerKind, ref: str) -> None:
    """Remove what ``ensure`` or a server placement created; gone already is no error."""
    cmp, net, bs = conn.compute, conn.network, conn.block_storage
    if kind is K.FLAVOR:
        cmp.delete_flavor(ref, ignore_missing=True)
    elif kind is K.KEYPAIR:
        cmp.delete_keypair(ref, ignore_missing=True)
    elif kind is K.VOLUME_TYPE:
        bs.delete_type(ref, ignore_missing=True)
    elif kind is K.PORT:
        net.delete_port(ref, ignore_missing=True)
    elif kind is K.FLOATING_IP:
        net.delete_ip(ref, ignore_missing=True)
    elif kind is K.ROUTER:
        r = net.find_router(ref)
        if r is not None:
            for p in net.ports(device_id=r.id, device_owner="network:router_interface"):
                with contextlib.suppress(osexc.NotFoundException):
                    net.remove_interface_from_router(r, port_id=p.id)
            net.delete_router(r, ignore_missing=True)
    elif kind is K.SUBNET:
        net.delete_subnet(ref, ignore_missing=True)
    elif kind is K.NETWORK:
        delete_network(conn, ref)
    elif kind is K.SECURITY_GROUP:
        net.delete_security_group(ref, ignore_missing=True)
    elif kind is K.ROLE_ASSIGNMENT:
        pid, uid, rid = ref.split(":")
        with contextlib.suppress(osexc.NotFoundException):
            conn.identity.unassign_project_role_from_user(pid, uid, rid)
    else:
        raise SiteInputError("kind", f"a {kind.value} is removed through the site protocol")


def delete_network(conn: Any, network_id: str) -> None:
    """A network Haven made, with what is left on it: unbound ports (a server's ports go
    with it), subnets, the network."""
    net = conn.network
    n = net.find_network(network_id)
    if n is None:
        return
    for port in net.ports(network_id=n.id):
        if not port.device_owner or port.device_owner.startswith("compute:"):
            net.delete_port(port, ignore_missing=True)
    for sub in net.subnets(network_id=n.id):
        net.delete_subnet(sub, ignore_missing=True)
    net.delete_network(n, ignore_missing=True)
