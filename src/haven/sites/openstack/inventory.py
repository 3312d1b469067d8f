"""Capture an application's servers and everything they depend on, by name and content."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from openstack.connection import Connection

from haven.sites.openstack.model import (
    AppInventory,
    FlavorRec,
    ImageRec,
    KeypairRec,
    NetworkRec,
    NicRec,
    RouterRec,
    RuleRec,
    SecurityGroupRec,
    ServerRec,
    SubnetRec,
    VolumeRec,
)


def capture(conn: Connection, site: str, server_ids: Iterable[str]) -> AppInventory:
    servers = [conn.compute.get_server(sid) for sid in server_ids]
    net_ids: dict[str, Any] = {}
    sg_names: set[str] = set()
    recs: list[ServerRec] = []
    flavors: dict[str, FlavorRec] = {}
    keypairs: dict[str, KeypairRec] = {}
    images: dict[str, ImageRec] = {}
    vtypes: set[str] = set()
    fips: list[tuple[str, str, str]] = []
    fip_nets: dict[str, str] = {}
    for s in servers:
        flavor = _flavor(s.flavor)
        flavors[flavor.name] = flavor
        if s.key_name and s.key_name not in keypairs:
            kp = conn.compute.get_keypair(s.key_name)
            keypairs[s.key_name] = KeypairRec(kp.name, kp.public_key, kp.type or "ssh")
        nics = []
        for port in conn.network.ports(device_id=s.id):
            net = net_ids.get(port.network_id) or conn.network.get_network(port.network_id)
            net_ids[port.network_id] = net
            subnet = (
                conn.network.get_subnet(port.fixed_ips[0]["subnet_id"]) if port.fixed_ips else None
            )
            nics.append(
                NicRec(
                    net.name,
                    tuple(ip["ip_address"] for ip in port.fixed_ips),
                    port.mac_address,
                    subnet.name if subnet else None,
                    port.name or "",
                )
            )
            for fip in conn.network.ips(port_id=port.id):
                fips.append((fip.floating_ip_address, s.name, fip.fixed_ip_address))
                ext = net_ids.get(fip.floating_network_id) or conn.network.get_network(
                    fip.floating_network_id
                )
                fip_nets[fip.floating_ip_address] = ext.name
        nics.sort(key=lambda n: n.mac or "")
        groups = tuple(sorted({g["name"] for g in (s.security_groups or [])}))
        sg_names.update(groups)
        vols = []
        for att in conn.compute.volume_attachments(s):
            v = conn.block_storage.get_volume(att.volume_id)
            device = att.device
            boot = 0 if device and device == s.root_device_name else None
            vols.append(
                VolumeRec(
                    v.name or f"vol-{v.id}",
                    v.size,
                    bool(v.is_bootable),
                    v.volume_type,
                    device,
                    boot,
                    v.id,
                    dict(v.metadata or {}),
                )
            )
            if v.volume_type:
                vtypes.add(v.volume_type)
        vols.sort(key=lambda v: (v.boot_index is None, v.device or ""))
        image_name = None
        if s.image and s.image.get("id"):
            img = conn.image.get_image(s.image["id"])
            images[img.name] = ImageRec(
                img.name, img.disk_format, img.container_format, img.checksum, img.size
            )
            image_name = img.name
        recs.append(
            ServerRec(
                name=s.name,
                flavor=flavor.name,
                key_name=s.key_name,
                nics=tuple(nics),
                security_groups=groups,
                volumes=tuple(vols),
                image=image_name,
                availability_zone=s.availability_zone,
                metadata=dict(s.metadata or {}),
                floating_ips=tuple(f[0] for f in fips if f[1] == s.name),
                source_id=s.id,
            )
        )
    networks = [_network(conn, n) for n in net_ids.values()]
    subnet_ids = {sid for n in net_ids.values() for sid in n.subnet_ids}
    routers = _routers(conn, subnet_ids)
    project_id = conn.current_project_id
    sgs = [
        _secgroup(conn, g)
        for g in conn.network.security_groups(project_id=project_id)
        if g.name in sg_names
    ]
    return AppInventory(
        site=site,
        servers=tuple(recs),
        flavors=tuple(flavors.values()),
        keypairs=tuple(keypairs.values()),
        images=tuple(images.values()),
        volume_types=tuple(sorted(vtypes)),
        networks=tuple(networks),
        routers=tuple(routers),
        security_groups=tuple(sgs),
        floating_ips=tuple(fips),
        project=conn.current_project.name if conn.current_project else None,
        role_assignments=_roles(conn, project_id),
        floating_ip_networks=fip_nets,
    )


def _flavor(f: Any) -> FlavorRec:
    return FlavorRec(
        f.original_name or f.name,
        f.vcpus,
        f.ram,
        f.disk,
        f.ephemeral or 0,
        int(f.swap or 0),
        dict(f.extra_specs or {}),
    )


def _network(conn: Connection, net: Any) -> NetworkRec:
    subs = []
    for sid in net.subnet_ids:
        s = conn.network.get_subnet(sid)
        subs.append(
            SubnetRec(
                s.name,
                s.cidr,
                s.ip_version,
                s.gateway_ip,
                bool(s.is_dhcp_enabled),
                tuple((p["start"], p["end"]) for p in s.allocation_pools or []),
                tuple(s.dns_nameservers or []),
            )
        )
    subs.sort(key=lambda s: s.name)
    return NetworkRec(
        net.name, tuple(subs), net.mtu, bool(net.is_router_external), bool(net.is_shared), net.id
    )


def _routers(conn: Connection, subnet_ids: set[str]) -> list[RouterRec]:
    out = []
    for r in conn.network.routers(project_id=conn.current_project_id):
        ifaces = []
        for p in conn.network.ports(device_id=r.id, device_owner="network:router_interface"):
            for ip in p.fixed_ips:
                if ip["subnet_id"] in subnet_ids:
                    ifaces.append(conn.network.get_subnet(ip["subnet_id"]).name)
        if not ifaces:
            continue
        ext = None
        gw = r.external_gateway_info or {}
        if gw.get("network_id"):
            ext = conn.network.get_network(gw["network_id"]).name
        routes = tuple((x["destination"], x["nexthop"]) for x in (r.routes or []))
        out.append(RouterRec(r.name, ext, tuple(sorted(ifaces)), routes))
    return out


def _secgroup(conn: Connection, g: Any) -> SecurityGroupRec:
    names = {}
    rules = []
    for r in g.security_group_rules:
        remote = r.get("remote_group_id")
        if remote and remote not in names:
            names[remote] = conn.network.get_security_group(remote).name
        rules.append(
            RuleRec(
                r["direction"],
                r["ethertype"],
                r.get("protocol"),
                r.get("port_range_min"),
                r.get("port_range_max"),
                r.get("remote_ip_prefix"),
                names.get(remote) if remote else None,
            )
        )
    rules.sort(
        key=lambda x: tuple(
            str(v)
            for v in (
                x.direction,
                x.ethertype,
                x.protocol,
                x.port_range_min,
                x.remote_ip_prefix,
                x.remote_group,
            )
        )
    )
    return SecurityGroupRec(g.name, g.description or "", tuple(rules))


def _roles(conn: Connection, project_id: str) -> tuple[tuple[str, str], ...]:
    try:
        out = []
        for a in conn.identity.role_assignments(scope_project_id=project_id, include_names=True):
            user = (a.user or {}).get("name")
            role = (a.role or {}).get("name")
            if user and role:
                out.append((user, role))
        return tuple(sorted(set(out)))
    except Exception:  # reading assignments needs admin; the rest of the capture does not
        return ()
