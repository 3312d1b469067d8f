"""A project's infrastructure, as captured with a recovery point and re-created at recovery.

Pure data, no I/O. A site whose servers live inside a project (OpenStack) captures, when a
point is taken, everything the group's servers depend on: flavors, keypairs, networks with
their subnets, routers, security groups with their rules, volume types, floating IPs, the
project's role assignments, and per server its flavor, keypair, security groups, ports
(network, subnet, fixed IPs) and volume types (``ProjectSnapshot``). Everything is by name
and content, never by id alone, so that the recovery site can rebuild it while the
protected site is gone.

At recovery the engine turns a snapshot, the plan's mappings and what the target site has
(``SiteSurvey``) into an ``InfraPlan``: the resources to create (``InfraItem``, one engine
step each), the placement of every server (``PlacedServerRequest``) and the floating IPs to
attach. Whatever an operation creates at a site is recorded in the catalog's ledger under
a ``LedgerKind``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class LedgerKind(StrEnum):
    """A kind of site resource an operation creates and records (the catalog's ledger).

    Declared in the order cleanup removes them: what depends on another resource comes
    before it (a server before its ports and volumes, a router before its subnets)."""

    SERVER = "server"
    FLOATING_IP = "floating_ip"
    PORT = "port"
    VOLUME = "volume"
    ROUTER = "router"
    SUBNET = "subnet"
    NETWORK = "network"
    SECURITY_GROUP = "security_group"
    KEYPAIR = "keypair"
    FLAVOR = "flavor"
    VOLUME_TYPE = "volume_type"
    ROLE_ASSIGNMENT = "role_assignment"

    @property
    def removal_rank(self) -> int:
        return _RANK[self]


_RANK = {k: i for i, k in enumerate(LedgerKind)}


# -- what a point records ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FlavorDef:
    name: str
    vcpus: int
    ram_mib: int
    disk_gib: int = 0
    ephemeral_gib: int = 0
    swap_mib: int = 0
    extra_specs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeypairDef:
    name: str
    public_key: str
    type: str = "ssh"


@dataclass(frozen=True, slots=True)
class IpRange:
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class SubnetDef:
    name: str
    cidr: str
    ip_version: int = 4
    gateway_ip: str | None = None
    dhcp: bool = True
    pools: tuple[IpRange, ...] = ()
    dns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkDef:
    name: str
    subnets: tuple[SubnetDef, ...] = ()
    mtu: int | None = None
    external: bool = False  # the operator's (floating IP pools, router gateways): never created
    shared: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    destination: str
    nexthop: str


@dataclass(frozen=True, slots=True)
class RouterDef:
    name: str
    gateway: str | None = None  # the external network's name
    interfaces: tuple[str, ...] = ()  # subnet names
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleDef:
    direction: str  # "ingress" | "egress"
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group: str | None = None  # a security group's name


@dataclass(frozen=True, slots=True)
class SecurityGroupDef:
    name: str
    description: str = ""
    rules: tuple[RuleDef, ...] = ()


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    user: str
    role: str

    def __str__(self) -> str:
        return f"{self.user}:{self.role}"


@dataclass(frozen=True, slots=True)
class PortDef:
    network: str
    fixed_ips: tuple[str, ...] = ()
    subnet: str | None = None
    mac: str | None = None


@dataclass(frozen=True, slots=True)
class FloatingIpDef:
    address: str
    server: str  # the member server's name
    fixed_ip: str  # the address it pointed to
    network: str  # the external network it was allocated from


@dataclass(frozen=True, slots=True)
class ServerPlacement:
    server: str  # the member server's name
    flavor: str
    keypair: str | None = None
    security_groups: tuple[str, ...] = ()
    ports: tuple[PortDef, ...] = ()
    volume_types: dict[str, str] = field(default_factory=dict)  # disk target -> type


@dataclass(frozen=True, slots=True)
class ProjectSnapshot:
    """Everything a group's servers depend on at one site (see module doc)."""

    project: str | None = None
    role_assignments: tuple[RoleAssignment, ...] = ()
    flavors: tuple[FlavorDef, ...] = ()
    keypairs: tuple[KeypairDef, ...] = ()
    networks: tuple[NetworkDef, ...] = ()
    routers: tuple[RouterDef, ...] = ()
    security_groups: tuple[SecurityGroupDef, ...] = ()
    volume_types: tuple[str, ...] = ()
    floating_ips: tuple[FloatingIpDef, ...] = ()
    servers: tuple[ServerPlacement, ...] = ()

    def placement(self, server: str) -> ServerPlacement | None:
        return next((s for s in self.servers if s.server == server), None)

    def network(self, name: str) -> NetworkDef | None:
        return next((n for n in self.networks if n.name == name), None)


# -- what the recovery site has -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SurveyRequest:
    """Names a preflight asks a site about (already mapped to the site's names)."""

    flavors: tuple[str, ...] = ()
    keypairs: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    routers: tuple[str, ...] = ()
    volume_types: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    role_assignments: tuple[RoleAssignment, ...] = ()
    addresses: tuple[tuple[str, str], ...] = ()  # (network, ip): is the address taken?


@dataclass(frozen=True, slots=True)
class FoundSubnet:
    name: str
    cidr: str


@dataclass(frozen=True, slots=True)
class FoundNetwork:
    name: str
    external: bool
    subnets: tuple[FoundSubnet, ...] = ()


@dataclass(frozen=True, slots=True)
class AddressUse:
    network: str
    ip: str
    holder: str  # what holds it (a port's name or id, a server's name)


@dataclass(frozen=True, slots=True)
class SiteSurvey:
    """Which of the asked names exist at the site (in the project Haven works in)."""

    flavors: tuple[str, ...] = ()
    keypairs: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    networks: tuple[FoundNetwork, ...] = ()
    routers: tuple[str, ...] = ()
    volume_types: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    role_assignments: tuple[RoleAssignment, ...] = ()
    addresses_in_use: tuple[AddressUse, ...] = ()

    def network(self, name: str) -> FoundNetwork | None:
        return next((n for n in self.networks if n.name == name), None)


# -- what a recovery does ---------------------------------------------------------------------
InfraDef = FlavorDef | KeypairDef | NetworkDef | RouterDef | SecurityGroupDef | RoleAssignment


@dataclass(frozen=True, slots=True)
class InfraItem:
    """One resource to create at the recovery site, its definition already in the site's
    names (mapped networks, subnets, security groups). ``volume_type`` items carry only
    the name (``definition`` None)."""

    kind: LedgerKind
    name: str
    definition: InfraDef | None = None

    @property
    def label(self) -> str:
        return f"{self.kind.value}/{self.name}"


@dataclass(frozen=True, slots=True)
class Created:
    """A resource a site created (for the ledger). ``ref`` is the site's id for it."""

    kind: LedgerKind
    ref: str
    name: str


@dataclass(frozen=True, slots=True)
class PortRequest:
    network: str  # the network at the recovery site
    subnet: str | None = None  # its subnet to take the address from
    ip: str | None = None  # the fixed IP to keep; None: the site assigns one


@dataclass(frozen=True, slots=True)
class PlacedServerRequest:
    """How one server is placed at the recovery site, in the site's names."""

    flavor: str
    keypair: str | None = None
    security_groups: tuple[str, ...] = ()
    ports: tuple[PortRequest, ...] = ()
    volume_types: dict[str, str] = field(default_factory=dict)  # disk target -> type


@dataclass(frozen=True, slots=True)
class PlacedServer:
    server_id: str
    created: tuple[Created, ...] = ()  # the ports it made (the server itself not included)


@dataclass(frozen=True, slots=True)
class FloatingIpRequest:
    server: str  # the member server's name
    network: str  # the external network at the recovery site
    fixed_ip: str  # the recovered server's address it must point to
    address: str  # the captured address: kept when the site's pool has it free
    tag: str  # marks the address as this operation's (found again after a crash)


@dataclass(frozen=True, slots=True)
class FloatingIpResult:
    address: str
    kept: bool  # the captured address was kept
    created: tuple[Created, ...] = ()


@dataclass(frozen=True, slots=True)
class Lack:
    """Something the recovery site lacks and Haven will not create: ``path`` names the plan
    field that leads to it, ``message`` says what is missing and how to fix it."""

    path: str
    message: str


@dataclass(frozen=True, slots=True)
class InfraPlan:
    """The preflight's outcome: what to create (in order), how each server is placed, the
    floating IPs to attach, and notes on decisions (addresses not kept, ...)."""

    items: tuple[InfraItem, ...] = ()
    placements: dict[str, PlacedServerRequest] = field(default_factory=dict)
    floating_ips: tuple[FloatingIpRequest, ...] = ()
    used: tuple[str, ...] = ()  # existing resources of the target used as they are
    notes: tuple[str, ...] = ()


__all__ = [
    "AddressUse",
    "Created",
    "FlavorDef",
    "FloatingIpDef",
    "FloatingIpRequest",
    "FloatingIpResult",
    "FoundNetwork",
    "FoundSubnet",
    "InfraDef",
    "InfraItem",
    "InfraPlan",
    "IpRange",
    "KeypairDef",
    "Lack",
    "LedgerKind",
    "NetworkDef",
    "PlacedServer",
    "PlacedServerRequest",
    "PortDef",
    "PortRequest",
    "ProjectSnapshot",
    "RoleAssignment",
    "Route",
    "RouterDef",
    "RuleDef",
    "SecurityGroupDef",
    "ServerPlacement",
    "SiteSurvey",
    "SubnetDef",
    "SurveyRequest",
]
