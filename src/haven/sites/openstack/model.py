"""What Haven captures of an OpenStack application: by name and content, never by ID alone.

A recovery point stores these records (``to_dict``) so that the recovery site can rebuild
the application even when the protected site is gone. IDs are kept only as ``source_id``
for the record; everything is matched at the target by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class FlavorRec:
    name: str
    vcpus: int
    ram_mib: int
    disk_gib: int
    ephemeral_gib: int = 0
    swap_mib: int = 0
    extra_specs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeypairRec:
    name: str
    public_key: str
    type: str = "ssh"


@dataclass(frozen=True, slots=True)
class SubnetRec:
    name: str
    cidr: str
    ip_version: int
    gateway_ip: str | None
    enable_dhcp: bool
    allocation_pools: tuple[tuple[str, str], ...] = ()
    dns_nameservers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkRec:
    name: str
    subnets: tuple[SubnetRec, ...]
    mtu: int | None = None
    external: bool = False
    shared: bool = False
    source_id: str | None = None


@dataclass(frozen=True, slots=True)
class RouterRec:
    name: str
    external_network: str | None  # name of the gateway network
    interface_subnets: tuple[str, ...]  # subnet names
    routes: tuple[tuple[str, str], ...] = ()  # (destination, nexthop)


@dataclass(frozen=True, slots=True)
class RuleRec:
    direction: str
    ethertype: str
    protocol: str | None
    port_range_min: int | None
    port_range_max: int | None
    remote_ip_prefix: str | None
    remote_group: str | None  # a security group's name


@dataclass(frozen=True, slots=True)
class SecurityGroupRec:
    name: str
    description: str
    rules: tuple[RuleRec, ...]


@dataclass(frozen=True, slots=True)
class NicRec:
    network: str  # network name
    fixed_ips: tuple[str, ...]
    mac: str | None
    subnet: str | None = None
    port_name: str = ""


@dataclass(frozen=True, slots=True)
class VolumeRec:
    name: str
    size_gib: int
    bootable: bool
    volume_type: str | None
    device: str | None  # where it is attached ("/dev/vda"); None if detached
    boot_index: int | None  # 0 for the boot volume
    source_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServerRec:
    name: str
    flavor: str  # flavor name
    key_name: str | None
    nics: tuple[NicRec, ...]
    security_groups: tuple[str, ...]
    volumes: tuple[VolumeRec, ...]
    image: str | None  # image name when not booted from a volume
    availability_zone: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    floating_ips: tuple[str, ...] = ()
    source_id: str = ""

    @property
    def boot_volume(self) -> VolumeRec | None:
        for v in self.volumes:
            if v.boot_index == 0:
                return v
        return None


@dataclass(frozen=True, slots=True)
class ImageRec:
    name: str
    disk_format: str
    container_format: str
    checksum: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class AppInventory:
    """Everything an application's servers depend on at one site."""

    site: str
    servers: tuple[ServerRec, ...]
    flavors: tuple[FlavorRec, ...]
    keypairs: tuple[KeypairRec, ...]
    images: tuple[ImageRec, ...]
    volume_types: tuple[str, ...]
    networks: tuple[NetworkRec, ...]
    routers: tuple[RouterRec, ...]
    security_groups: tuple[SecurityGroupRec, ...]
    floating_ips: tuple[tuple[str, str, str], ...]  # (address, server name, fixed ip)
    project: str | None = None
    role_assignments: tuple[tuple[str, str], ...] = ()  # (user name, role name)
    # floating IP address -> its external network's name (points before this field: empty)
    floating_ip_networks: dict[str, str] = field(default_factory=dict)

    def server(self, name: str) -> ServerRec:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AppInventory:
        def subnets(items: list[dict[str, Any]]) -> tuple[SubnetRec, ...]:
            return tuple(
                SubnetRec(
                    **{
                        **s,
                        "allocation_pools": tuple(tuple(p) for p in s["allocation_pools"]),
                        "dns_nameservers": tuple(s["dns_nameservers"]),
                    }
                )
                for s in items
            )

        return cls(
            site=d["site"],
            servers=tuple(
                ServerRec(
                    **{
                        **s,
                        "nics": tuple(
                            NicRec(**{**n, "fixed_ips": tuple(n["fixed_ips"])}) for n in s["nics"]
                        ),
                        "security_groups": tuple(s["security_groups"]),
                        "volumes": tuple(VolumeRec(**v) for v in s["volumes"]),
                        "floating_ips": tuple(s["floating_ips"]),
                    }
                )
                for s in d["servers"]
            ),
            flavors=tuple(FlavorRec(**f) for f in d["flavors"]),
            keypairs=tuple(KeypairRec(**k) for k in d["keypairs"]),
            images=tuple(ImageRec(**i) for i in d["images"]),
            volume_types=tuple(d["volume_types"]),
            networks=tuple(
                NetworkRec(**{**n, "subnets": subnets(n["subnets"])}) for n in d["networks"]
            ),
            routers=tuple(
                RouterRec(
                    **{
                        **r,
                        "interface_subnets": tuple(r["interface_subnets"]),
                        "routes": tuple(tuple(x) for x in r["routes"]),
                    }
                )
                for r in d["routers"]
            ),
            security_groups=tuple(
                SecurityGroupRec(
                    s["name"], s["description"], tuple(RuleRec(**r) for r in s["rules"])
                )
                for s in d["security_groups"]
            ),
            floating_ips=tuple(tuple(f) for f in d["floating_ips"]),  # type: ignore[misc]
            project=d.get("project"),
            role_assignments=tuple(tuple(r) for r in d.get("role_assignments", ())),  # type: ignore[misc]
            floating_ip_networks=dict(d.get("floating_ip_networks", {})),
        )
