"""Recovery at the target region: preflight, infrastructure, volumes, servers in plan order.

Everything Haven creates is written to a :class:`Ledger` so that a drill's cleanup removes
exactly that and nothing else. Matching at the target is by name (after mapping); an
existing resource of the mapped name is used, never modified.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openstack import exceptions as osexc
from openstack.connection import Connection

from haven.sites.openstack.connection import wait_status
from haven.sites.openstack.errors import OpenStackSiteError, PreflightFailed
from haven.sites.openstack.model import AppInventory, NetworkRec, ServerRec


@dataclass
class Mapping:
    """Source name -> target name; unmapped names stay the same."""

    networks: dict[str, str] = field(default_factory=dict)
    flavors: dict[str, str] = field(default_factory=dict)
    keypairs: dict[str, str] = field(default_factory=dict)
    security_groups: dict[str, str] = field(default_factory=dict)
    server_prefix: str = ""
    keep_fixed_ips: bool = True
    create_missing: bool = True  # create networks, flavors, ... the target lacks
    # the target project's name; None: the connection's own project. A project that is
    # missing is created and the captured (user, role) assignments are re-created there.
    project: str | None = None

    def net(self, name: str) -> str:
        """Mapped network name; external networks (routers' gateways, floating IP pools)
        are mapped through the same table."""
        return self.networks.get(name, name)

    def inverse(self) -> Mapping:
        """The mapping for the way back (failback): target names -> source names."""
        return Mapping(
            networks={v: k for k, v in self.networks.items()},
            flavors={v: k for k, v in self.flavors.items()},
            keypairs={v: k for k, v in self.keypairs.items()},
            security_groups={v: k for k, v in self.security_groups.items()},
            keep_fixed_ips=self.keep_fixed_ips,
            create_missing=self.create_missing,
        )


@dataclass
class Ledger:
    """What a recovery created, in creation order; cleanup undoes it in reverse."""

    items: list[tuple[str, str]] = field(default_factory=list)  # (kind, id)

    def add(self, kind: str, rid: str) -> None:
        self.items.append((kind, rid))

    def ids(self, kind: str) -> list[str]:
        return [rid for k, rid in self.items if k == kind]


@dataclass(frozen=True, slots=True)
class Missing:
    kind: str
    name: str
    creatable: bool


def preflight(
    conn: Connection,
    inv: AppInventory,
    mapping: Mapping,
    project_exists: bool = True,
    project_id: str | None = None,
) -> list[Missing]:
    """What the target lacks for this application, before anything is created.

    Networks, routers and security groups count only when they belong to the connection's
    project (or are shared/external): an admin sees every project's, and a name in
    another project is no use. ``project_exists`` False (a mapped project still to be
    created): nothing project-owned exists yet. ``project_id``: the target project when it
    is not the connection's."""
    out: list[Missing] = []
    pid = project_id or conn.current_project_id
    flavors = {f.name for f in conn.compute.flavors()}
    for f in inv.flavors:
        if mapping.flavors.get(f.name, f.name) not in flavors:
            out.append(Missing("flavor", mapping.flavors.get(f.name, f.name), True))
    keys = {k.name for k in conn.compute.keypairs()}
    for k in inv.keypairs:
        if mapping.keypairs.get(k.name, k.name) not in keys:
            out.append(Missing("keypair", mapping.keypairs.get(k.name, k.name), True))
    all_nets = list(conn.network.networks())
    public = {n.name for n in all_nets if n.is_shared or n.is_router_external}
    nets = public | {n.name for n in all_nets if project_exists and n.project_id == pid}
    for n in inv.networks:
        if mapping.net(n.name) not in nets:
            out.append(Missing("network", mapping.net(n.name), not n.external))
    routers = {r.name for r in conn.network.routers(project_id=pid)} if project_exists else set()
    for r in inv.routers:
        if r.name not in routers:
            ext_ok = r.external_network is None or mapping.net(r.external_network) in public
            out.append(Missing("router", r.name, ext_ok))
    sgs = (
        {g.name for g in conn.network.security_groups(project_id=pid)} if project_exists else set()
    )
    for g in inv.security_groups:
        if mapping.security_groups.get(g.name, g.name) not in sgs:
            out.append(Missing("security_group", g.name, True))
    vtypes = {t.name for t in conn.block_storage.types()}
    for t in inv.volume_types:
        if t not in vtypes:
            out.append(Missing("volume_type", t, True))
    return out


def find_network(conn: Connection, name: str) -> Any:
    """The project's network of that name, else a shared or external one."""
    net = conn.network.find_network(name, project_id=conn.current_project_id)
    return net or conn.network.find_network(name, ignore_missing=False)


def check(missing: Sequence[Missing], mapping: Mapping) -> None:
    """Raise :class:`PreflightFailed` when the recovery cannot go on: something is missing
    that Haven cannot create, or anything is missing and creating is not allowed."""
    blocked = [f"{m.kind} {m.name}" for m in missing if not m.creatable]
    if blocked or (missing and not mapping.create_missing):
        raise PreflightFailed(blocked or [f"{m.kind} {m.name}" for m in missing])


def ensure_infrastructure(
    conn: Connection, inv: AppInventory, mapping: Mapping, ledger: Ledger
) -> None:
    missing = preflight(conn, inv, mapping)
    check(missing, mapping)
    want = {(m.kind, m.name) for m in missing}
    for t in inv.volume_types:
        if ("volume_type", t) in want:
            ledger.add("volume_type", conn.block_storage.create_type(name=t).id)
    for f in inv.flavors:
        name = mapping.flavors.get(f.name, f.name)
        if ("flavor", name) in want:
            fl = conn.compute.create_flavor(
                name=name,
                vcpus=f.vcpus,
                ram=f.ram_mib,
                disk=f.disk_gib,
                ephemeral=f.ephemeral_gib,
                swap=f.swap_mib or 0,
            )
            if f.extra_specs:
                conn.compute.create_flavor_extra_specs(fl, f.extra_specs)
            ledger.add("flavor", fl.id)
    for k in inv.keypairs:
        name = mapping.keypairs.get(k.name, k.name)
        if ("keypair", name) in want:
            conn.compute.create_keypair(name=name, public_key=k.public_key)
            ledger.add("keypair", name)
    for n in inv.networks:
        if ("network", mapping.net(n.name)) in want:
            create_network(conn, n, mapping.net(n.name), ledger)
    for r in inv.routers:
        if ("router", r.name) in want:
            create_router(
                conn,
                r.name,
                [mapping.net(s) for s in r.interface_subnets],
                mapping.net(r.external_network) if r.external_network else None,
                ledger,
                inv.networks,
                mapping,
            )
    _ensure_security_groups(conn, inv, mapping, ledger, want)


def create_network(conn: Connection, n: NetworkRec, name: str, ledger: Ledger) -> Any:
    net = (
        conn.network.create_network(name=name, mtu=n.mtu)
        if n.mtu
        else conn.network.create_network(name=name)
    )
    ledger.add("network", net.id)
    for s in n.subnets:
        kw: dict[str, Any] = {
            "network_id": net.id,
            "name": s.name,
            "cidr": s.cidr,
            "ip_version": s.ip_version,
            "gateway_ip": s.gateway_ip,
            "is_dhcp_enabled": s.enable_dhcp,
        }
        if s.allocation_pools:
            kw["allocation_pools"] = [{"start": a, "end": b} for a, b in s.allocation_pools]
        if s.dns_nameservers:
            kw["dns_nameservers"] = list(s.dns_nameservers)
        ledger.add("subnet", conn.network.create_subnet(**kw).id)
    return net


def create_router(
    conn: Connection,
    name: str,
    subnet_names: Sequence[str],
    external: str | None,
    ledger: Ledger,
    networks: Sequence[NetworkRec] = (),
    mapping: Mapping | None = None,
    subnet_ids: Sequence[str] = (),
) -> Any:
    kw: dict[str, Any] = {"name": name}
    if external:
        ext = conn.network.find_network(external)
        if ext is None:
            raise PreflightFailed([f"external network {external}"])
        kw["external_gateway_info"] = {"network_id": ext.id}
    router = conn.network.create_router(**kw)
    ledger.add("router", router.id)
    ids = list(subnet_ids)
    for sname in subnet_names:
        s = conn.network.find_subnet(sname, project_id=conn.current_project_id)
        if s is not None:
            ids.append(s.id)
    for sid in ids:
        conn.network.add_interface_to_router(router, subnet=sid)
        ledger.add("router_interface", f"{router.id}:{sid}")
    return router


def _ensure_security_groups(
    conn: Connection,
    inv: AppInventory,
    mapping: Mapping,
    ledger: Ledger,
    want: set[tuple[str, str]],
) -> None:
    created = {}
    for g in inv.security_groups:
        if ("security_group", g.name) in want:
            sg = conn.network.create_security_group(
                name=mapping.security_groups.get(g.name, g.name), description=g.description
            )
            ledger.add("security_group", sg.id)
            for r in sg.security_group_rules:  # drop defaults: rules are copied as captured
                conn.network.delete_security_group_rule(r["id"], ignore_missing=True)
            created[g.name] = sg
    for g in inv.security_groups:
        sg = created.get(g.name)
        if sg is None:
            continue
        for r in g.rules:
            kw: dict[str, Any] = {
                "security_group_id": sg.id,
                "direction": r.direction,
                "ether_type": r.ethertype,
                "protocol": r.protocol,
                "port_range_min": r.port_range_min,
                "port_range_max": r.port_range_max,
                "remote_ip_prefix": r.remote_ip_prefix,
            }
            if r.remote_group:
                remote = created.get(r.remote_group) or conn.network.find_security_group(
                    mapping.security_groups.get(r.remote_group, r.remote_group),
                    project_id=conn.current_project_id,
                )
                kw["remote_group_id"] = remote.id if remote else None
            with contextlib.suppress(osexc.ConflictException):
                conn.network.create_security_group_rule(**kw)


@dataclass(frozen=True, slots=True)
class BootedServer:
    name: str
    server_id: str
    source_name: str
    stage: int
    requested_at: float
    active_at: float
    fixed_ips: tuple[str, ...]


def boot_servers(
    conn: Connection,
    inv: AppInventory,
    stages: Sequence[Sequence[str]],
    volumes: dict[tuple[str, str], str],
    mapping: Mapping,
    ledger: Ledger,
    gate: Callable[[Any], bool] | None = None,
    timeout: float = 600,
) -> list[BootedServer]:
    """Boot servers from their restored volumes, stage by stage.

    ``volumes`` maps (source server name, source volume name) to a target volume id. A stage
    starts only when every server of the previous stage is ACTIVE (and passes ``gate``).
    """
    out = []
    for i, stage in enumerate(stages):
        pending = []
        for sname in stage:
            rec = inv.server(sname)
            t = time.time()
            srv = _create_server(conn, rec, volumes, mapping, ledger)
            pending.append((rec, srv, t))
        for rec, srv, t in pending:
            srv = wait_status(
                f"server {srv.name}",
                lambda srv=srv: conn.compute.get_server(srv.id),
                {"ACTIVE"},
                timeout=timeout,
            )
            if gate is not None and not gate(srv):
                raise OpenStackSiteError(f"server {srv.name} did not pass its readiness gate")
            ips = tuple(
                p["ip_address"]
                for port in conn.network.ports(device_id=srv.id)
                for p in port.fixed_ips
            )
            out.append(BootedServer(srv.name, srv.id, rec.name, i, t, time.time(), ips))
    return out


def _create_server(
    conn: Connection,
    rec: ServerRec,
    volumes: dict[tuple[str, str], str],
    mapping: Mapping,
    ledger: Ledger,
) -> Any:
    flavor = conn.compute.find_flavor(
        mapping.flavors.get(rec.flavor, rec.flavor), ignore_missing=False
    )
    bdm = []
    for v in rec.volumes:
        bdm.append(
            {
                "uuid": volumes[(rec.name, v.name)],
                "source_type": "volume",
                "destination_type": "volume",
                "delete_on_termination": False,
                "boot_index": 0 if v.boot_index == 0 else -1,
            }
        )
    bdm.sort(key=lambda b: b["boot_index"] != 0)
    nets = []
    for nic in rec.nics:
        net = find_network(conn, mapping.net(nic.network))
        port_kw: dict[str, Any] = {
            "network_id": net.id,
            "name": f"{mapping.server_prefix}{rec.name}",
        }
        if mapping.keep_fixed_ips and nic.fixed_ips:
            subnet = _subnet_for(conn, net.id, nic.fixed_ips[0])
            if subnet is not None and _ip_free(conn, net.id, nic.fixed_ips[0]):
                port_kw["fixed_ips"] = [{"subnet_id": subnet.id, "ip_address": nic.fixed_ips[0]}]
        sgs = [
            conn.network.find_security_group(
                mapping.security_groups.get(g, g), project_id=conn.current_project_id
            )
            for g in rec.security_groups
        ]
        port_kw["security_group_ids"] = [g.id for g in sgs if g is not None]
        port = conn.network.create_port(**port_kw)
        ledger.add("port", port.id)
        nets.append({"port": port.id})
    kw: dict[str, Any] = {
        "name": f"{mapping.server_prefix}{rec.name}",
        "flavor_id": flavor.id,
        "networks": nets or "none",
        "block_device_mapping": bdm,
        "metadata": {**rec.metadata, "haven:source": rec.source_id},
    }
    if rec.key_name:
        kw["key_name"] = mapping.keypairs.get(rec.key_name, rec.key_name)
    srv = conn.compute.create_server(**kw)
    ledger.add("server", srv.id)
    return srv


def _subnet_for(conn: Connection, network_id: str, ip: str) -> Any:
    addr = ipaddress.ip_address(ip)
    for sub in conn.network.subnets(network_id=network_id):
        if addr in ipaddress.ip_network(sub.cidr):
            return sub
    return None


def _ip_free(conn: Connection, network_id: str, ip: str) -> bool:
    return not list(conn.network.ports(network_id=network_id, fixed_ips=[f"ip_address={ip}"]))


def cleanup(conn: Connection, ledger: Ledger, timeout: float = 600) -> None:
    """Remove what the ledger recorded, newest first (servers before volumes and ports).

    Kinds that record use rather than creation (``restored_into``: an existing volume a
    backup was restored onto) are left alone."""
    cmp, net, bs = conn.compute, conn.network, conn.block_storage
    servers = ledger.ids("server")
    for sid in servers:
        cmp.delete_server(sid, ignore_missing=True)
    for sid in servers:
        s = cmp.find_server(sid)
        if s is not None:
            cmp.wait_for_delete(s, wait=timeout)
    for kind, rid in reversed(ledger.items):
        if kind == "floating_ip":
            net.delete_ip(rid, ignore_missing=True)
        elif kind == "floating_ip_assoc":  # an existing address Haven only associated
            with contextlib.suppress(osexc.NotFoundException):
                net.update_ip(rid, port_id=None)
        elif kind == "role_assignment":
            project_id, user_id, role_id = rid.split(":")
            with contextlib.suppress(osexc.NotFoundException):
                conn.identity.unassign_project_role_from_user(project_id, user_id, role_id)
        elif kind == "project":
            # Neutron made the project a default security group; Keystone won't remove it
            for g in net.security_groups(project_id=rid):
                net.delete_security_group(g, ignore_missing=True)
            conn.identity.delete_project(rid, ignore_missing=True)
        elif kind == "volume":
            v = bs.find_volume(rid)
            if v is not None:
                wait_status(
                    f"volume {rid}",
                    lambda rid=rid: bs.get_volume(rid),
                    {"available", "error"},
                    frozenset(),
                    timeout=timeout,
                )
                bs.delete_volume(rid, ignore_missing=True)
                bs.wait_for_delete(v, wait=timeout)
        elif kind == "port":
            net.delete_port(rid, ignore_missing=True)
        elif kind == "router_interface":
            router_id, subnet_id = rid.split(":")
            with contextlib.suppress(osexc.NotFoundException):
                net.remove_interface_from_router(router_id, subnet=subnet_id)
        elif kind == "router":
            net.delete_router(rid, ignore_missing=True)
        elif kind == "subnet":
            net.delete_subnet(rid, ignore_missing=True)
        elif kind == "network":
            net.delete_network(rid, ignore_missing=True)
        elif kind == "security_group":
            net.delete_security_group(rid, ignore_missing=True)
        elif kind == "keypair":
            cmp.delete_keypair(rid, ignore_missing=True)
        elif kind == "flavor":
            cmp.delete_flavor(rid, ignore_missing=True)
        elif kind == "volume_type":
            bs.delete_type(rid, ignore_missing=True)
    ledger.items.clear()


def bubble(conn: Connection, inv: AppInventory, name: str, ledger: Ledger) -> Mapping:
    """A test bubble: one isolated copy of each application network (same CIDRs, so the
    original fixed IPs fit) behind one router without an external gateway."""
    mapping = Mapping(server_prefix=f"{name}-")
    subnet_ids = []
    for n in inv.networks:
        if n.external:
            continue
        bn = f"{name}-{n.name}"
        net = conn.network.create_network(name=bn)
        ledger.add("network", net.id)
        for s in n.subnets:
            sub = conn.network.create_subnet(
                network_id=net.id,
                name=f"{name}-{s.name}",
                cidr=s.cidr,
                ip_version=s.ip_version,
                gateway_ip=s.gateway_ip,
                is_dhcp_enabled=s.enable_dhcp,
            )
            ledger.add("subnet", sub.id)
            if s.gateway_ip:
                subnet_ids.append(sub.id)
        mapping.networks[n.name] = bn
    create_router(conn, f"{name}-router", [], None, ledger, subnet_ids=subnet_ids)
    return mapping
