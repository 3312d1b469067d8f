"""What a site holds and what Haven captures of it: pure data, no I/O.

These types cross the boundary between site drivers and the engine. ``ServerSpec`` is the
captured metadata of one server: enough to define the same server at another site (the
engine maps names, networks and volumes; a driver turns the spec into its own format).
Sizes are bytes, memory is MiB, MAC addresses are lower-case colon-separated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from haven.domain.points import Consistency


class PowerState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    UNKNOWN = "unknown"


class DiskRole(StrEnum):
    BOOT = "boot"  # holds the OS; restored first, attached first
    DATA = "data"  # application data
    SCRATCH = "scratch"  # not protected: re-created empty at the target


@dataclass(frozen=True, slots=True)
class DiskSpec:
    target: str  # device name inside the server definition, e.g. "vda"
    size_bytes: int
    role: DiskRole = DiskRole.DATA
    format: str = "qcow2"  # "qcow2" | "raw"
    bus: str = "virtio"
    source: str | None = None  # site-local location (path, volume id); None in a template


@dataclass(frozen=True, slots=True)
class NicSpec:
    network: str  # network name at the site the spec was captured from
    mac: str | None = None
    model: str = "virtio"


@dataclass(frozen=True, slots=True)
class BootSpec:
    """Direct kernel boot when ``kernel`` is set, else boot from the first BOOT disk.

    ``acpi``: the machine has ACPI firmware tables, which a guest needs to power itself
    off (S5) and to see a power-button press; without it a graceful stop only halts the
    guest and the server stays running until it is forced off."""

    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    machine: str | None = None
    arch: str = "x86_64"
    acpi: bool = True


@dataclass(frozen=True, slots=True)
class ServerSpec:
    name: str
    vcpus: int
    memory_mib: int
    disks: tuple[DiskSpec, ...]
    nics: tuple[NicSpec, ...] = ()
    boot: BootSpec = field(default_factory=BootSpec)
    guest_agent: bool = True  # a guest-agent channel is configured
    source_id: str | None = None  # id (UUID) at the site it was captured from

    def disk(self, target: str) -> DiskSpec:
        for d in self.disks:
            if d.target == target:
                return d
        raise KeyError(target)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    id: str
    name: str
    state: PowerState
    spec: ServerSpec


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    id: str
    name: str
    active: bool
    bridge: str | None = None


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    id: str  # stable handle at the site (for libvirt: the volume's path)
    name: str
    size_bytes: int
    format: str


__all__ = [
    "BootSpec",
    "Consistency",
    "DiskRole",
    "DiskSpec",
    "NetworkInfo",
    "NicSpec",
    "PowerState",
    "ServerInfo",
    "ServerSpec",
    "VolumeInfo",
]
