"""The roles the engine asks site drivers for, beyond the SiteDriver protocol.

A driver takes on a role by having its methods; the engine finds a role with
``isinstance(driver, Role)`` on these runtime-checkable protocols and never probes for
single methods. Drivers do not import this module (sites sit below the engine): they
implement the methods, with the data types of ``haven.domain`` and ``haven.sites.base``.

- ``NetworkCreation``: isolated networks for drills (the test bubble).
- ``NativeBackups``: the site keeps point data itself (policy data path cinder-backup).
- ``ProjectInfrastructure``: the site's servers live in a project whose networks, routers,
  security groups, keypairs, flavors, volume types and role assignments Haven captures
  with a point and re-creates at recovery, one resource per engine step.
- ``ProjectServers``: servers placed into that infrastructure (flavor, keypair, security
  groups, ports with fixed IPs, typed volumes) and their floating IPs.
- ``ServerAddresses``: where a server answers, for TCP checks from Haven's host.
- ``Closable``: a driver holding connections the engine closes when it forgets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from haven.domain.inventory import NetworkInfo, ServerSpec, VolumeInfo
from haven.domain.project import (
    Created,
    FloatingIpRequest,
    FloatingIpResult,
    InfraItem,
    LedgerKind,
    PlacedServer,
    PlacedServerRequest,
    ProjectSnapshot,
    SiteSurvey,
    SurveyRequest,
)
from haven.sites.base import NativeCopy, PointDisk, PointHandle


@runtime_checkable
class NetworkCreation(Protocol):
    def create_network(self, name: str, cidr: str) -> NetworkInfo:
        """An isolated network with one subnet of ``cidr`` and no route out; SiteConflict
        if ``name`` exists."""
        ...

    def delete_network(self, ref: str) -> None:
        """Remove the network ``create_network`` returned (``NetworkInfo.id``) with what is
        left on it; SiteNotFound if it is gone."""
        ...


@runtime_checkable
class NativeBackups(Protocol):
    """A driver whose site can keep point data itself (OpenStack: Cinder backup into the
    recovery region's backup store, records exported and imported)."""

    def backup_point_disk(
        self, point: PointHandle, disk: PointDisk, parent_ref: str | None
    ) -> NativeCopy:
        """Back the disk up from the point; incremental from ``parent_ref`` (the same
        disk's ref in the parent point) where the site can."""
        ...

    def restore_native(self, ref: str, volume: VolumeInfo) -> int:
        """Write the copy ``ref`` into ``volume`` (an existing volume at this site, at
        least as large); returns the bytes written."""
        ...


@runtime_checkable
class ProjectInfrastructure(Protocol):
    def capture_project(self, servers: Mapping[str, str]) -> ProjectSnapshot:
        """What the servers (member name -> id at this site) depend on, by name and
        content; placements keyed by member name."""
        ...

    def survey(self, request: SurveyRequest) -> SiteSurvey:
        """Which of the asked names exist here, in the project Haven works in (shared and
        external networks count), and which asked addresses are taken."""
        ...

    def ensure(self, item: InfraItem) -> tuple[Created, ...]:
        """The resource named ``item.name`` and its parts (a network's subnets, a router's
        interfaces), each found by name or else created from the definition; returns
        them all. The engine calls it only for what its preflight found missing, so all
        it returns is the operation's to record, also when an interrupted earlier call
        created part of it: calling it again creates no duplicate."""
        ...

    def remove(self, kind: LedgerKind, ref: str) -> None:
        """Remove a resource ``ensure`` (or a server placement) created; one already gone
        is no error. Servers and volumes go through the SiteDriver protocol."""
        ...


@runtime_checkable
class ProjectServers(Protocol):
    def define_placed_server(
        self,
        spec: ServerSpec,
        *,
        name: str,
        placement: PlacedServerRequest,
        volumes: dict[str, VolumeInfo],
    ) -> PlacedServer:
        """As ``SiteDriver.define_server`` (the server is left stopped), placed with the
        request's flavor, keypair, security groups and ports; ports are found by name
        before they are created."""
        ...

    def create_typed_volume(self, name: str, size_bytes: int, volume_type: str) -> VolumeInfo:
        """As ``SiteDriver.create_volume``, of the named volume type."""
        ...

    def attach_floating_ip(self, server_id: str, request: FloatingIpRequest) -> FloatingIpResult:
        """A floating IP of ``request.network`` pointing at ``request.fixed_ip`` of the
        server: the one already tagged ``request.tag`` (an earlier attempt), else the
        captured address when the pool has it free, else any."""
        ...


@runtime_checkable
class ServerAddresses(Protocol):
    def server_addresses(self, server_id: str) -> tuple[str, ...]:
        """Addresses the server answers on: floating ones first, then fixed ones."""
        ...


@runtime_checkable
class Closable(Protocol):
    def close(self) -> None: ...
