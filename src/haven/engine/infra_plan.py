"""The preflight of a project recovery, as pure functions: from a point's project snapshot,
the plan's mappings and what the recovery site has, decide what to create, how each server
is placed, and everything the site lacks that Haven will not create.

Rules (one per kind of mapping):
- A mapping names a resource that must exist at the recovery site (``flavors: {small:
  m1.small}``: servers of flavor ``small`` get the site's ``m1.small``). A mapping to
  something the site lacks is a ``Lack``.
- An unmapped resource is used when the site has one of the same name (never modified),
  else re-created by that name from the point (networks with their subnets, routers,
  security groups with their rules, keypairs, flavors, volume types, role assignments).
- External networks (floating IP pools, router gateways), users and roles are the
  operator's: never created; one the site lacks is a ``Lack``.
- Fixed IPs are kept (``ips`` replaces one server's address on one network); an address
  that does not fit the target subnet, or that another port holds, is a ``Lack``.
- A drill (``bubble``): every port goes to the bubble network, keeping its fixed IP when
  it fits the bubble's subnet; no network, router or floating IP is made.

Every lack names the plan field that leads to it and the fix; the preflight reports them
all at once, before anything is created.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from haven.domain.plans import Mappings
from haven.domain.project import (
    FloatingIpRequest,
    FoundNetwork,
    InfraItem,
    InfraPlan,
    Lack,
    LedgerKind,
    NetworkDef,
    PlacedServerRequest,
    PortDef,
    PortRequest,
    ProjectSnapshot,
    RouterDef,
    ServerPlacement,
    SiteSurvey,
    SurveyRequest,
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how a recovery runs: ``path`` is the plan's mappings field (for lacks)."""

    site: str
    mappings: Mappings
    path: str
    names: dict[str, str]  # member server name -> its name at the site
    bubble: str = ""  # a drill's test network
    tag: str = ""  # marks floating IPs as this operation's
    reused: frozenset[str] = frozenset()  # servers that exist there already (failback)


def survey_request(snap: ProjectSnapshot, t: Target) -> SurveyRequest:
    m = t.mappings
    used = _used_networks(snap) | _external_networks(snap)
    nets = {t.bubble} if t.bubble else {m.networks.get(n, n) for n in used}
    addresses: list[tuple[str, str]] = []
    if not t.bubble:
        for p in snap.servers:
            if p.server in t.reused:  # its own addresses: it keeps them
                continue
            for port in p.ports:
                ip = _wanted_ip(p.server, port, m)
                if ip:
                    addresses.append((m.networks.get(port.network, port.network), ip))
    return SurveyRequest(
        flavors=tuple(sorted({m.flavors.get(p.flavor, p.flavor) for p in snap.servers})),
        keypairs=tuple(sorted({m.keypairs.get(k, k) for k in _keypairs(snap)})),
        security_groups=tuple(sorted({_sg(m, g.name) for g in snap.security_groups})),
        networks=tuple(sorted(nets)),
        routers=() if t.bubble else tuple(sorted(r.name for r in snap.routers)),
        volume_types=tuple(sorted(_volume_types(snap))),
        users=tuple(sorted({a.user for a in snap.role_assignments})),
        roles=tuple(sorted({a.role for a in snap.role_assignments})),
        role_assignments=snap.role_assignments,
        addresses=tuple(addresses),
    )


@dataclass
class _Plan:
    t: Target
    snap: ProjectSnapshot
    have: SiteSurvey
    items: list[InfraItem] = field(default_factory=list)
    lacks: list[Lack] = field(default_factory=list)
    used: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    subnets: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def lack(self, path: str, message: str) -> None:
        self.lacks.append(Lack(f"{self.t.path}{path}", message))


def plan_infrastructure(
    snap: ProjectSnapshot, have: SiteSurvey, t: Target
) -> tuple[InfraPlan, list[Lack]]:
    """The InfraPlan of this recovery, and everything the site lacks (empty: go on)."""
    p = _Plan(t, snap, have)
    _named(p, LedgerKind.VOLUME_TYPE)
    _flavors(p)
    _keypairs_(p)
    if not t.bubble:
        _networks(p)
        _routers(p)
    _security_groups(p)
    _roles(p)
    placements = {s.server: _place(p, s) for s in snap.servers if s.server not in t.reused}
    fips = _floating_ips(p, placements)
    plan = InfraPlan(tuple(p.items), placements, fips, tuple(p.used), tuple(p.notes))
    return plan, p.lacks


# -- per kind -------------------------------------------------------------------------------
def _named(p: _Plan, kind: LedgerKind) -> None:
    for name in sorted(_volume_types(p.snap)):
        if name in p.have.volume_types:
            p.used.append(f"volume_type/{name}")
        else:
            p.items.append(InfraItem(kind, name))


def _flavors(p: _Plan) -> None:
    m = p.t.mappings
    defs = {f.name: f for f in p.snap.flavors}
    for src in sorted({s.flavor for s in p.snap.servers}):
        dst = m.flavors.get(src, src)
        if dst in p.have.flavors:
            p.used.append(f"flavor/{dst}")
        elif src in m.flavors:
            p.lack(f".flavors.{src}", _mapped_missing("flavor", src, dst, p.t.site))
        elif src in defs:
            p.items.append(InfraItem(LedgerKind.FLAVOR, dst, replace(defs[src], name=dst)))
        else:
            p.lack(
                ".flavors",
                f"flavor {src} was not captured with the point and {p.t.site} "
                "has none of that name: map it to a flavor the site has",
            )


def _keypairs_(p: _Plan) -> None:
    m = p.t.mappings
    defs = {k.name: k for k in p.snap.keypairs}
    for src in sorted(_keypairs(p.snap)):
        dst = m.keypairs.get(src, src)
        if dst in p.have.keypairs:
            p.used.append(f"keypair/{dst}")
        elif src in m.keypairs:
            p.lack(f".keypairs.{src}", _mapped_missing("keypair", src, dst, p.t.site))
        elif src in defs:
            p.items.append(InfraItem(LedgerKind.KEYPAIR, dst, replace(defs[src], name=dst)))
        else:
            p.lack(
                ".keypairs",
                f"keypair {src} was not captured with the point and "
                f"{p.t.site} has none of that name: map it to one it has",
            )


def _networks(p: _Plan) -> None:
    m, site = p.t.mappings, p.t.site
    used = _used_networks(p.snap)
    externals = _external_networks(p.snap)
    for src in sorted(used | externals):
        dst = m.networks.get(src, src)
        found = p.have.network(dst)
        if src in externals:
            if found is None or not found.external:
                why = "does not exist" if found is None else "is not an external network"
                p.lack(
                    f".networks.{src}" if src in m.networks else ".networks",
                    f"external network {dst} (for {_external_use(p.snap, src)}) {why} "
                    f"at {site}; Haven does not create external networks: map {src} to "
                    "one the site has",
                )
            else:
                p.used.append(f"network/{dst}")
            continue
        d = p.snap.network(src) or NetworkDef(src)
        if found is not None:
            p.used.append(f"network/{dst}")
            _resolve_subnets(p, d, found)
        elif src in m.networks:
            p.lack(f".networks.{src}", _mapped_missing("network", src, dst, site))
        elif d.external or d.shared:
            p.lack(
                ".networks",
                f"network {src} is a shared or external network (the "
                f"operator's) that {site} does not have: map it to one the site has",
            )
        else:
            subnets = tuple(replace(s, name=m.subnets.get(s.name, s.name)) for s in d.subnets)
            p.items.append(
                InfraItem(LedgerKind.NETWORK, dst, replace(d, name=dst, subnets=subnets))
            )
            for s, t in zip(d.subnets, subnets, strict=True):
                p.subnets[(src, s.name)] = (t.name, t.cidr)


def _resolve_subnets(p: _Plan, d: NetworkDef, found: FoundNetwork) -> None:
    """Each captured subnet of a network the site has: the mapped one, else one of the
    same name, else one of the same CIDR (fixed IPs fit it)."""
    m = p.t.mappings
    by_name = {s.name: s for s in found.subnets}
    for s in d.subnets:
        if s.name in m.subnets:
            hit = by_name.get(m.subnets[s.name])
            if hit is None:
                p.lack(
                    f".subnets.{s.name}",
                    f"maps subnet {s.name} to {m.subnets[s.name]}, "
                    f"which network {found.name} at {p.t.site} does not have (it has: "
                    f"{_listed(by_name)})",
                )
                continue
        else:
            hit = by_name.get(s.name) or next((x for x in found.subnets if x.cidr == s.cidr), None)
            if hit is None:
                p.lack(
                    ".subnets",
                    f"network {found.name} at {p.t.site} has no subnet {s.name} "
                    f"nor one of CIDR {s.cidr}: map {s.name} to one of its subnets "
                    f"({_listed(by_name)})",
                )
                continue
        p.subnets[(d.name, s.name)] = (hit.name, hit.cidr)


def _routers(p: _Plan) -> None:
    m = p.t.mappings
    for r in p.snap.routers:
        if r.name in p.have.routers:
            p.used.append(f"router/{r.name}")
            continue
        owner = {s.name: n.name for n in p.snap.networks for s in n.subnets}
        ifaces = tuple(
            p.subnets[(owner[s], s)][0] for s in r.interfaces if (owner.get(s, ""), s) in p.subnets
        )
        gw = m.networks.get(r.gateway, r.gateway) if r.gateway else None
        p.items.append(
            InfraItem(LedgerKind.ROUTER, r.name, RouterDef(r.name, gw, ifaces, r.routes))
        )


def _security_groups(p: _Plan) -> None:
    m = p.t.mappings
    for g in p.snap.security_groups:
        dst = _sg(m, g.name)
        if dst in p.have.security_groups:
            p.used.append(f"security_group/{dst}")
        elif g.name in m.security_groups:
            p.lack(
                f".security_groups.{g.name}",
                _mapped_missing("security group", g.name, dst, p.t.site),
            )
        else:
            rules = tuple(
                replace(r, remote_group=_sg(m, r.remote_group)) if r.remote_group else r
                for r in g.rules
            )
            p.items.append(
                InfraItem(LedgerKind.SECURITY_GROUP, dst, replace(g, name=dst, rules=rules))
            )


def _roles(p: _Plan) -> None:
    for a in p.snap.role_assignments:
        missing = [
            w
            for w, ok in (
                (f"user {a.user}", a.user in p.have.users),
                (f"role {a.role}", a.role in p.have.roles),
            )
            if not ok
        ]
        if missing:
            p.lacks.append(
                Lack(
                    f"sites.{p.t.site}",
                    f"{' and '.join(missing)} (assigned on the "
                    f"protected project) do not exist at {p.t.site}; Haven does not "
                    "create users or roles: create them there",
                )
            )
        elif a in p.have.role_assignments:
            p.used.append(f"role_assignment/{a}")
        else:
            p.items.append(InfraItem(LedgerKind.ROLE_ASSIGNMENT, str(a), a))


def _place(p: _Plan, s: ServerPlacement) -> PlacedServerRequest:
    m = p.t.mappings
    ports = tuple(_port(p, s.server, i, port) for i, port in enumerate(s.ports))
    return PlacedServerRequest(
        flavor=m.flavors.get(s.flavor, s.flavor),
        keypair=m.keypairs.get(s.keypair, s.keypair) if s.keypair else None,
        security_groups=tuple(_sg(m, g) for g in s.security_groups),
        ports=ports,
        volume_types=dict(s.volume_types),
    )


def _port(p: _Plan, server: str, index: int, port: PortDef) -> PortRequest:
    m, t = p.t.mappings, p.t
    ip = _wanted_ip(server, port, m)
    if t.bubble:
        found = p.have.network(t.bubble)
        sub = next((x for x in (found.subnets if found else ()) if _fits(ip, x.cidr)), None)
        if ip and sub is None:
            p.notes.append(f"{server}: {ip} does not fit the test bubble; the site assigns one")
        return PortRequest(t.bubble, sub.name if sub else None, ip if sub else None)
    dst = m.networks.get(port.network, port.network)
    where = p.subnets.get((port.network, port.subnet or ""))
    if where is None and ip:  # the subnet is not recorded: the one the address fits
        where = next(
            (v for (n, _s), v in p.subnets.items() if n == port.network and _fits(ip, v[1])), None
        )
    if ip and where is not None and not _fits(ip, where[1]):
        p.lack(
            _ip_path(m, server, port.network),
            f"fixed IP {ip} of {server} (network "
            f"{port.network}) does not fit subnet {where[0]} ({where[1]}) of {dst} at "
            f"{t.site}: map the address with ips: [{{server: {server}, network: "
            f"{port.network}, ip: ...}}]",
        )
    mine = f"{t.names.get(server, server)}-{index}"  # the port a placement names so
    for use in p.have.addresses_in_use:  # (an earlier attempt's, which placing reuses)
        if ip and use.network == dst and use.ip == ip and use.holder != mine:
            p.lack(
                _ip_path(m, server, port.network),
                f"fixed IP {ip} of {server} is taken on "
                f"{dst} at {t.site} by {use.holder}: free it, or map another address "
                "with ips",
            )
    return PortRequest(dst, where[0] if where else None, ip)


def _floating_ips(
    p: _Plan, placements: dict[str, PlacedServerRequest]
) -> tuple[FloatingIpRequest, ...]:
    if p.t.bubble:
        if p.snap.floating_ips:
            p.notes.append(
                f"drill: {len(p.snap.floating_ips)} floating IP(s) not attached "
                "(a public address never points at a test copy)"
            )
        return ()
    m, out = p.t.mappings, []
    for f in p.snap.floating_ips:
        placed = placements.get(f.server)
        s = p.snap.placement(f.server)
        if placed is None or s is None:
            continue
        nic = next((i for i, x in enumerate(s.ports) if f.fixed_ip in x.fixed_ips), 0)
        ip = placed.ports[nic].ip if nic < len(placed.ports) else None
        name = p.t.names.get(f.server, f.server)
        out.append(
            FloatingIpRequest(
                f.server,
                m.networks.get(f.network, f.network),
                ip or "",
                f.address,
                f"haven:{p.t.tag}:{name}:{f.address}",
            )
        )
    return tuple(out)


# -- helpers ----------------------------------------------------------------------------------
def _wanted_ip(server: str, port: PortDef, m: Mappings) -> str | None:
    for x in m.ips:
        if x.server == server and x.network == port.network:
            return x.ip
    return port.fixed_ips[0] if port.fixed_ips else None


def _ip_path(m: Mappings, server: str, network: str) -> str:
    for k, x in enumerate(m.ips):
        if x.server == server and x.network == network:
            return f".ips[{k}]"
    return ".ips"


def _fits(ip: str | None, cidr: str) -> bool:
    if not ip:
        return True
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _sg(m: Mappings, name: str) -> str:
    return m.security_groups.get(name, name)


def _used_networks(snap: ProjectSnapshot) -> set[str]:
    return {port.network for s in snap.servers for port in s.ports}


def _external_networks(snap: ProjectSnapshot) -> set[str]:
    return {r.gateway for r in snap.routers if r.gateway} | {f.network for f in snap.floating_ips}


def _external_use(snap: ProjectSnapshot, name: str) -> str:
    uses = [f"router {r.name}" for r in snap.routers if r.gateway == name]
    uses += [
        f"floating IP {f.address} of {f.server}" for f in snap.floating_ips if f.network == name
    ]
    return ", ".join(uses)


def _keypairs(snap: ProjectSnapshot) -> set[str]:
    return {s.keypair for s in snap.servers if s.keypair}


def _volume_types(snap: ProjectSnapshot) -> set[str]:
    return {t for s in snap.servers for t in s.volume_types.values()}


def _mapped_missing(what: str, src: str, dst: str, site: str) -> str:
    return (
        f"maps {what} {src} to {dst}, which {site} does not have: create it there or "
        f"map {src} to a {what} the site has"
    )


def _listed(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"
