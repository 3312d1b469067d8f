"""Volume members at a site: where a group's standalone volumes are and who uses them.

A volume member is found by its name at the group's source site, and by the name a
recovery gave it (``<group>-<volume>``) at any other site (the recovery site after a
failover, or the home site when a failback had to recreate it). Each protect looks again:
attachments change between points.

Rules checked here, against the site (exit 2, naming the member): a volume attached to a
server member of the same group is refused (one owner: that member protects it already)
-- by apply when the source site answers it (``owner_problems``), and by every protect --
and a volume whose ``attached_to`` names a server is attached to that server.
"""

from __future__ import annotations

from haven.domain.errors import NotFoundError, ValidationError
from haven.domain.groups import Member, ProtectionGroup
from haven.domain.inventory import PowerState, ServerInfo, VolumeInfo
from haven.engine.model import VolumeAt
from haven.sites.base import SiteDriver


def same_volume_name(vol: VolumeInfo, name: str) -> bool:
    """Sites may add a format suffix to the name they were given (libvirt: ``.qcow2``)."""
    return vol.name == name or vol.name.rsplit(".", 1)[0] == name


def recovered_name(group: str, ref: str) -> str:
    return f"{group}-{ref}"


def find(drv: SiteDriver, g: ProtectionGroup, ref: str, site: str) -> VolumeInfo | None:
    """The volume member ``ref`` at ``site``: its own name first at the source site, the
    recovered name first elsewhere."""
    names = [ref, recovered_name(g.name, ref)]
    if site != g.source_site:
        names.reverse()
    volumes = drv.list_volumes()
    for name in names:
        found = [v for v in volumes if same_volume_name(v, name)]
        if found:
            return found[0]
    return None


def _attached(servers: list[ServerInfo], volume_id: str) -> tuple[ServerInfo, str] | None:
    for info in servers:
        for disk in info.spec.disks:
            if disk.source == volume_id:
                return info, disk.target
    return None


def one_owner(g: ProtectionGroup, index: int, ref: str, owner: str) -> ValidationError:
    return ValidationError(
        f"groups.{g.name}.members[{index}].volume",
        f"volume {ref!r} is attached to server {owner!r}, a member of group {g.name!r} that "
        f"protects its attached volumes already; a volume has one owner: remove this member "
        f"(or list the volume in {owner!r}'s 'volumes')",
    )


def owner_problems(drv: SiteDriver, g: ProtectionGroup) -> list[ValidationError]:
    """Volume members that the site shows attached to a server member of ``g`` (at its
    source site): what apply can see of the one-owner rule before any point is taken."""
    servers = drv.list_servers()
    members = {s.id: s.name for s in servers if s.name in g.servers()}
    problems: list[ValidationError] = []
    for index, m in enumerate(g.members):
        if m not in g.volume_members():
            continue
        vol = find(drv, g, m.ref, g.source_site)
        found = _attached(servers, vol.id) if vol is not None else None
        if found is not None and found[0].id in members:
            problems.append(one_owner(g, index, m.ref, members[found[0].id]))
    return problems


def locate(
    drv: SiteDriver,
    g: ProtectionGroup,
    site: str,
    members: dict[str, str],
    hosts: dict[str, str],
) -> tuple[VolumeAt, ...]:
    """Every volume member of ``g`` at ``site``. ``members``: server members' ids there;
    ``hosts``: the ids of the servers volume members are attached to (``attached_to``)."""
    if not g.volume_members():
        return ()
    servers = drv.list_servers()
    names = {sid: name for name, sid in members.items()}
    out: list[VolumeAt] = []
    for index, m in enumerate(g.members):
        if m in g.volume_members():
            out.append(_one(drv, g, site, index, m, servers, names, hosts))
    return tuple(out)


def _one(
    drv: SiteDriver,
    g: ProtectionGroup,
    site: str,
    index: int,
    m: Member,
    servers: list[ServerInfo],
    member_names: dict[str, str],
    hosts: dict[str, str],
) -> VolumeAt:
    path = f"groups.{g.name}.members[{index}]"
    vol = find(drv, g, m.ref, site)
    if vol is None:
        raise NotFoundError(
            f"{path}: volume {m.ref!r} is not at site {site} "
            f"(looked for {m.ref!r} and {recovered_name(g.name, m.ref)!r})"
        )
    found = _attached(servers, vol.id)
    if found is not None and found[0].id in member_names:
        raise one_owner(g, index, m.ref, member_names[found[0].id])
    host = ""
    if m.attached_to:
        want = hosts.get(m.attached_to)
        if found is None:
            raise ValidationError(
                f"{path}.attached_to",
                f"volume {m.ref!r} is attached to no server at site {site}; attach it to "
                f"{m.attached_to!r} or remove 'attached_to'",
            )
        if want is None or found[0].id != want:
            raise ValidationError(
                f"{path}.attached_to",
                f"volume {m.ref!r} is attached to server {found[0].name!r} at site {site}, "
                f"not to {m.attached_to!r}",
            )
        host = m.attached_to
    if found is None:
        return VolumeAt(m.ref, vol.id, vol.name, vol.size_bytes)
    info, target = found
    live = info.state is PowerState.RUNNING
    return VolumeAt(m.ref, vol.id, vol.name, vol.size_bytes, host, info.id, target, live)
