"""The fake site's project: flavors, keypairs, networks with subnets, routers, security
groups, volume types, role assignments, ports with fixed IPs and floating IPs, in memory.

For engine unit tests of project recovery (the engine's ProjectInfrastructure,
ProjectServers, ServerAddresses and NetworkCreation roles): same contracts as the OpenStack
driver, no cloud. Test knobs: ``add_flavor``, ``add_keypair``, ``add_network`` (``external``
for floating-IP pools), ``add_router``, ``add_security_group``, ``add_volume_type``,
``add_user``/``add_role``/``assign``, ``place`` (a server's flavor, keypair, security
groups and fixed IPs), ``add_floating_ip``. Everything lives in plain attributes, so the
file-backed fake persists it with the rest of its state.
"""

from __future__ import annotations

import ipaddress
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from haven.domain.inventory import NetworkInfo, NicSpec, ServerSpec, VolumeInfo
from haven.domain.project import (
    AddressUse,
    Created,
    FlavorDef,
    FloatingIpDef,
    FloatingIpRequest,
    FloatingIpResult,
    FoundNetwork,
    FoundSubnet,
    InfraItem,
    KeypairDef,
    LedgerKind,
    NetworkDef,
    PlacedServer,
    PlacedServerRequest,
    PortDef,
    ProjectSnapshot,
    RoleAssignment,
    RouterDef,
    SecurityGroupDef,
    ServerPlacement,
    SiteSurvey,
    SubnetDef,
    SurveyRequest,
)
from haven.sites.errors import SiteConflict, SiteInputError, SiteNotFound

K = LedgerKind


@dataclass
class FakePort:
    id: str
    name: str
    network: str
    subnet: str | None
    ip: str | None
    server_id: str | None = None
    security_groups: tuple[str, ...] = ()


@dataclass
class FakeFloatingIp:
    id: str
    address: str
    network: str
    port_id: str | None = None
    tag: str = ""


@dataclass
class FakeProjectState:
    flavors: dict[str, tuple[str, FlavorDef]] = field(default_factory=dict)  # name -> id, def
    keypairs: dict[str, KeypairDef] = field(default_factory=dict)
    networks: dict[str, tuple[str, NetworkDef]] = field(default_factory=dict)
    external: set[str] = field(default_factory=set)
    routers: dict[str, tuple[str, RouterDef]] = field(default_factory=dict)
    security_groups: dict[str, tuple[str, SecurityGroupDef]] = field(default_factory=dict)
    volume_types: dict[str, str] = field(default_factory=dict)  # name -> id
    users: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)
    assignments: set[RoleAssignment] = field(default_factory=set)
    ports: dict[str, FakePort] = field(default_factory=dict)
    floating_ips: dict[str, FakeFloatingIp] = field(default_factory=dict)
    placements: dict[str, ServerPlacement] = field(default_factory=dict)  # by server id
    volume_type_of: dict[str, str] = field(default_factory=dict)  # volume id -> type
    next_address: int = 100


class FakeProjectMixin:
    """Mixed into FakeDriver; expects ``name``, ``servers``, ``networks``, ``volumes``,
    ``define_server`` and ``create_volume`` of the driver."""

    name: str
    networks: dict[str, NetworkInfo]
    project: FakeProjectState

    # -- test knobs ------------------------------------------------------------------------
    def add_flavor(self, f: FlavorDef) -> None:
        self.project.flavors[f.name] = (str(uuid.uuid4()), f)

    def add_keypair(self, k: KeypairDef) -> None:
        self.project.keypairs[k.name] = k

    def add_network(self, n: NetworkDef) -> NetworkInfo:
        net = NetworkInfo(str(uuid.uuid4()), n.name, True, f"br-{n.name}"[:15])
        self.networks[n.name] = net
        self.project.networks[n.name] = (net.id, n)
        if n.external:
            self.project.external.add(n.name)
        return net

    def add_router(self, r: RouterDef) -> None:
        self.project.routers[r.name] = (str(uuid.uuid4()), r)

    def add_security_group(self, g: SecurityGroupDef) -> None:
        self.project.security_groups[g.name] = (str(uuid.uuid4()), g)

    def add_volume_type(self, name: str) -> None:
        self.project.volume_types[name] = str(uuid.uuid4())

    def add_user(self, name: str) -> None:
        self.project.users.add(name)

    def add_role(self, name: str) -> None:
        self.project.roles.add(name)

    def assign(self, a: RoleAssignment) -> None:
        self.project.assignments.add(a)

    def place(self, server_id: str, placement: ServerPlacement) -> None:
        """Record a server's flavor, keypair, security groups and ports (one per
        ``placement.ports`` entry, with its fixed IPs), as a cloud would have them."""
        sid = self._server_id(server_id)
        for i, p in enumerate(placement.ports):
            pid = str(uuid.uuid4())
            ip = p.fixed_ips[0] if p.fixed_ips else None
            self.project.ports[pid] = FakePort(
                pid,
                f"{placement.server}-{i}",
                p.network,
                p.subnet,
                ip,
                sid,
                placement.security_groups,
            )
        self.project.placements[sid] = placement

    def add_floating_ip(self, server_id: str, network: str, address: str) -> None:
        sid = self._server_id(server_id)
        port = next(p for p in self.project.ports.values() if p.server_id == sid)
        fid = str(uuid.uuid4())
        self.project.floating_ips[fid] = FakeFloatingIp(fid, address, network, port.id)

    # -- ProjectInfrastructure ---------------------------------------------------------------
    def capture_project(self, servers: Mapping[str, str]) -> ProjectSnapshot:
        pr = self.project
        placed: list[ServerPlacement] = []
        fips: list[FloatingIpDef] = []
        for member, sid in servers.items():
            p = pr.placements.get(self._server_id(sid))
            if p is None:
                continue
            ports = tuple(x for x in pr.ports.values() if x.server_id == self._server_id(sid))
            placed.append(
                replace(
                    p,
                    server=member,
                    ports=tuple(
                        PortDef(x.network, (x.ip,) if x.ip else (), x.subnet) for x in ports
                    ),
                )
            )
            for f in pr.floating_ips.values():
                port = pr.ports.get(f.port_id or "")
                if port is not None and port.server_id == self._server_id(sid):
                    fips.append(FloatingIpDef(f.address, member, port.ip or "", f.network))
        nets = {x.network for s in placed for x in s.ports}
        subnets = {sub.name for n in nets if n in pr.networks for sub in pr.networks[n][1].subnets}
        routers = [r for _i, r in pr.routers.values() if set(r.interfaces) & subnets]
        groups = {g for s in placed for g in s.security_groups}
        return ProjectSnapshot(
            project=f"{self.name}-project",
            role_assignments=tuple(sorted(pr.assignments, key=str)),
            flavors=tuple(
                pr.flavors[f][1] for f in sorted({s.flavor for s in placed}) if f in pr.flavors
            ),
            keypairs=tuple(
                pr.keypairs[k] for k in {s.keypair for s in placed if s.keypair} if k in pr.keypairs
            ),
            networks=tuple(
                pr.networks[n][1]
                for n in sorted(nets | {f.network for f in fips})
                if n in pr.networks
            ),
            routers=tuple(routers),
            security_groups=tuple(
                d for n, (_i, d) in sorted(pr.security_groups.items()) if n in groups
            ),
            volume_types=tuple(sorted({t for s in placed for t in s.volume_types.values()})),
            floating_ips=tuple(fips),
            servers=tuple(placed),
        )

    def survey(self, request: SurveyRequest) -> SiteSurvey:
        pr = self.project
        nets = []
        for n in request.networks:
            if n in self.networks:
                d = pr.networks.get(n, ("", NetworkDef(n)))[1]
                subs = tuple(FoundSubnet(s.name, s.cidr) for s in d.subnets)
                nets.append(FoundNetwork(n, n in pr.external, subs))
        taken = {(p.network, p.ip): p.name for p in pr.ports.values() if p.ip}
        return SiteSurvey(
            flavors=tuple(f for f in request.flavors if f in pr.flavors),
            keypairs=tuple(k for k in request.keypairs if k in pr.keypairs),
            security_groups=tuple(g for g in request.security_groups if g in pr.security_groups),
            networks=tuple(nets),
            routers=tuple(r for r in request.routers if r in pr.routers),
            volume_types=tuple(t for t in request.volume_types if t in pr.volume_types),
            users=tuple(u for u in request.users if u in pr.users),
            roles=tuple(r for r in request.roles if r in pr.roles),
            role_assignments=tuple(a for a in request.role_assignments if a in pr.assignments),
            addresses_in_use=tuple(
                AddressUse(n, ip, taken[(n, ip)]) for n, ip in request.addresses if (n, ip) in taken
            ),
        )

    def ensure(self, item: InfraItem) -> tuple[Created, ...]:
        pr, d = self.project, item.definition
        if item.kind is K.FLAVOR and isinstance(d, FlavorDef):
            if item.name not in pr.flavors:
                self.add_flavor(replace(d, name=item.name))
            return (Created(K.FLAVOR, pr.flavors[item.name][0], item.name),)
        if item.kind is K.KEYPAIR and isinstance(d, KeypairDef):
            pr.keypairs.setdefault(item.name, replace(d, name=item.name))
            return (Created(K.KEYPAIR, item.name, item.name),)
        if item.kind is K.VOLUME_TYPE:
            if item.name not in pr.volume_types:
                self.add_volume_type(item.name)
            return (Created(K.VOLUME_TYPE, pr.volume_types[item.name], item.name),)
        if item.kind is K.NETWORK and isinstance(d, NetworkDef):
            return self._ensure_network(replace(d, name=item.name))
        if item.kind is K.ROUTER and isinstance(d, RouterDef):
            if d.gateway and d.gateway not in pr.external:
                raise SiteInputError("router.gateway", f"{d.gateway} is no external network")
            if item.name not in pr.routers:
                self.add_router(d)
            return (Created(K.ROUTER, pr.routers[item.name][0], item.name),)
        if item.kind is K.SECURITY_GROUP and isinstance(d, SecurityGroupDef):
            if item.name not in pr.security_groups:
                self.add_security_group(d)
            return (Created(K.SECURITY_GROUP, pr.security_groups[item.name][0], item.name),)
        if item.kind is K.ROLE_ASSIGNMENT and isinstance(d, RoleAssignment):
            pr.assignments.add(d)
            return (Created(K.ROLE_ASSIGNMENT, str(d), str(d)),)
        raise SiteInputError("item", f"cannot create a {item.kind.value} from {d!r}")

    def _ensure_network(self, d: NetworkDef) -> tuple[Created, ...]:
        pr = self.project
        if d.name not in pr.networks:
            self.add_network(NetworkDef(d.name, (), d.mtu))
        nid, have = pr.networks[d.name]
        known = {s.name for s in have.subnets}
        subnets = have.subnets + tuple(s for s in d.subnets if s.name not in known)
        pr.networks[d.name] = (nid, replace(have, subnets=subnets))
        return (
            Created(K.NETWORK, nid, d.name),
            *tuple(Created(K.SUBNET, f"{nid}/{s.name}", s.name) for s in d.subnets),
        )

    def remove(self, kind: LedgerKind, ref: str) -> None:
        pr = self.project
        if kind is K.FLAVOR:
            pr.flavors = {n: v for n, v in pr.flavors.items() if v[0] != ref}
        elif kind is K.KEYPAIR:
            pr.keypairs.pop(ref, None)
        elif kind is K.VOLUME_TYPE:
            pr.volume_types = {n: i for n, i in pr.volume_types.items() if i != ref}
        elif kind is K.ROUTER:
            pr.routers = {n: v for n, v in pr.routers.items() if v[0] != ref}
        elif kind is K.SECURITY_GROUP:
            pr.security_groups = {n: v for n, v in pr.security_groups.items() if v[0] != ref}
        elif kind is K.ROLE_ASSIGNMENT:
            pr.assignments = {a for a in pr.assignments if str(a) != ref}
        elif kind is K.PORT:
            pr.ports.pop(ref, None)
        elif kind is K.FLOATING_IP:
            pr.floating_ips.pop(ref, None)
        elif kind is K.SUBNET:
            nid, _, sub = ref.partition("/")
            for name, (i, d) in list(pr.networks.items()):
                if i == nid:
                    kept = tuple(s for s in d.subnets if s.name != sub)
                    pr.networks[name] = (i, replace(d, subnets=kept))
        elif kind is K.NETWORK:
            self.delete_network(ref)
        else:
            raise SiteInputError("kind", f"{kind.value} is removed through the site protocol")

    # -- NetworkCreation (test bubbles) -------------------------------------------------------
    def create_network(self, name: str, cidr: str = "192.168.250.0/24") -> NetworkInfo:
        if name in self.networks:
            raise SiteConflict(f"network {name} exists")
        return self.add_network(NetworkDef(name, (SubnetDef(f"{name}-subnet", cidr),)))

    def delete_network(self, ref: str) -> None:
        name = next((n for n, net in self.networks.items() if ref in (net.id, n)), None)
        if name is None:
            raise SiteNotFound(f"network {ref}")
        del self.networks[name]
        self.project.networks.pop(name, None)
        self.project.ports = {i: p for i, p in self.project.ports.items() if p.network != name}

    # -- ProjectServers ----------------------------------------------------------------------
    def define_placed_server(
        self,
        spec: ServerSpec,
        *,
        name: str,
        placement: PlacedServerRequest,
        volumes: dict[str, VolumeInfo],
    ) -> PlacedServer:
        pr = self.project
        missing = [f"flavor {placement.flavor}"] if placement.flavor not in pr.flavors else []
        if placement.keypair and placement.keypair not in pr.keypairs:
            missing.append(f"keypair {placement.keypair}")
        missing += [
            f"security group {g}" for g in placement.security_groups if g not in pr.security_groups
        ]
        if missing:
            raise SiteNotFound(f"{self.name}: {', '.join(missing)} not found")
        ports = [
            self._port(f"{name}-{i}", r.network, r.subnet, r.ip, placement.security_groups)
            for i, r in enumerate(placement.ports)
        ]
        nics = tuple(NicSpec(p.network) for p in ports)
        sid: str = self.define_server(  # type: ignore[attr-defined]
            replace(spec, nics=nics),
            name=name,
            network_map={p.network: p.network for p in ports},
            volumes=volumes,
        )
        for p in ports:
            p.server_id = sid
        pr.placements[sid] = ServerPlacement(
            name,
            placement.flavor,
            placement.keypair,
            placement.security_groups,
            (),
            dict(placement.volume_types),
        )
        return PlacedServer(sid, tuple(Created(K.PORT, p.id, p.name) for p in ports))

    def _port(
        self, name: str, network: str, subnet: str | None, ip: str | None, groups: tuple[str, ...]
    ) -> FakePort:
        pr = self.project
        found = next((p for p in pr.ports.values() if p.name == name), None)
        if found is not None:
            return found
        if network not in self.networks:
            raise SiteNotFound(f"{self.name}: network {network} not found")
        if ip and any(p.network == network and p.ip == ip for p in pr.ports.values()):
            raise SiteConflict(f"{self.name}: {ip} is taken on {network}")
        d = pr.networks.get(network, ("", NetworkDef(network)))[1]
        if ip and d.subnets and not any(_fits(ip, s.cidr) for s in d.subnets):
            raise SiteInputError("ip", f"{ip} fits no subnet of {network}")
        if not ip and d.subnets:
            ip = self._free_ip(network, d.subnets[0].cidr)
        port = FakePort(str(uuid.uuid4()), name, network, subnet, ip, None, groups)
        pr.ports[port.id] = port
        return port

    def _free_ip(self, network: str, cidr: str) -> str:
        taken = {p.ip for p in self.project.ports.values() if p.network == network}
        for host in itertools.islice(ipaddress.ip_network(cidr, strict=False).hosts(), 10, None):
            if str(host) not in taken:
                return str(host)
        raise SiteConflict(f"{self.name}: {network} is full")

    def create_typed_volume(self, name: str, size_bytes: int, volume_type: str) -> VolumeInfo:
        if volume_type not in self.project.volume_types:
            raise SiteNotFound(f"{self.name}: volume type {volume_type} not found")
        vol: VolumeInfo = self.create_volume(name, size_bytes)  # type: ignore[attr-defined]
        self.project.volume_type_of[vol.id] = volume_type
        return vol

    def attach_floating_ip(self, server_id: str, request: FloatingIpRequest) -> FloatingIpResult:
        pr = self.project
        sid = self._server_id(server_id)
        port = next(
            (
                p
                for p in pr.ports.values()
                if p.server_id == sid and (p.ip == request.fixed_ip or not request.fixed_ip)
            ),
            None,
        )
        if port is None:
            raise SiteNotFound(f"{self.name}: no port of {server_id} has {request.fixed_ip}")
        if request.network not in pr.external:
            raise SiteNotFound(f"{self.name}: external network {request.network} not found")
        fip = next((f for f in pr.floating_ips.values() if f.tag == request.tag), None)
        if fip is None:
            taken = {f.address for f in pr.floating_ips.values()}
            address = request.address
            if address in taken:
                address = f"203.0.113.{pr.next_address}"
                pr.next_address += 1
            fip = FakeFloatingIp(str(uuid.uuid4()), address, request.network, None, request.tag)
            pr.floating_ips[fip.id] = fip
        fip.port_id = port.id
        kept = fip.address == request.address
        return FloatingIpResult(fip.address, kept, (Created(K.FLOATING_IP, fip.id, fip.address),))

    # -- ServerAddresses ---------------------------------------------------------------------
    def server_addresses(self, server_id: str) -> tuple[str, ...]:
        pr = self.project
        sid = self._server_id(server_id)
        ports = [p for p in pr.ports.values() if p.server_id == sid]
        ids = {p.id for p in ports}
        fips = [f.address for f in pr.floating_ips.values() if f.port_id in ids]
        return tuple(fips + [p.ip for p in ports if p.ip])

    def volume_type(self, volume_id: str) -> str | None:
        """Test knob: the type a volume was created with."""
        return self.project.volume_type_of.get(volume_id)

    def _server_id(self, server_id: str) -> str:
        sid: str = self._srv(server_id).id  # type: ignore[attr-defined]
        return sid


def _fits(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
