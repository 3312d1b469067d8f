"""Checks that need more than one field: references, duplicates, cycles, conflicts.

They run on the merged configuration (what the catalog holds, overlaid with the spec
being applied), so a spec may reference resources applied earlier, and a change that
would break an existing resource is caught too.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from typing import Any

from haven.domain.errors import ValidationError
from haven.domain.groups import MemberKind, ProtectionGroup, QuiesceMethod
from haven.domain.plans import Probe, ProbeKind, RecoveryPlan, find_cycle
from haven.domain.policies import ConsistencyRequirement, DataPath
from haven.domain.resources import ResourceKind, Resources
from haven.domain.sites import Site, SiteDriver
from haven.specs.convert import repository_kind

_MIN_CHUNK, _MAX_CHUNK = 64 * 1024, 16 * 1024 * 1024


def _known(names: Iterable[str]) -> str:
    listed = sorted(names)
    return f"(known: {', '.join(listed)})" if listed else "(none defined)"


def duplicate_names(raw: Any) -> list[ValidationError]:
    """Names used twice within one kind of the raw spec document."""
    problems: list[ValidationError] = []
    if not isinstance(raw, dict):
        return problems
    for kind in ("sites", "repositories", "policies", "groups", "plans"):
        items = raw.get(kind)
        if not isinstance(items, list):
            continue
        first: dict[str, int] = {}
        for index, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            if name in first:
                problems.append(
                    ValidationError(
                        f"{kind}[{index}].name",
                        f"duplicate name {name!r} (also {kind}[{first[name]}]); names are unique "
                        "per kind",
                    )
                )
            else:
                first[name] = index
    return problems


def check(res: Resources, incoming: frozenset[str] = frozenset()) -> list[ValidationError]:
    """All cross-resource problems; ``incoming`` names the groups being applied, whose
    claims on servers yield to those of groups already in the catalog."""
    problems: list[ValidationError] = []
    for site in res.sites:
        problems += _check_site(site)
    sites = {s.name for s in res.sites}
    for repo in res.repositories:
        path = f"repositories.{repo.name}"
        if repository_kind(repo.url) is None:
            problems.append(
                ValidationError(
                    f"{path}.url",
                    f"{repo.url!r} is not a repository location (use an absolute path, "
                    "swift://container/prefix or s3://bucket/prefix)",
                )
            )
        if repo.site is not None and repo.site not in sites:
            problems.append(
                ValidationError(f"{path}.site", f"unknown site {repo.site!r} {_known(sites)}")
            )
        if (repo.password is None) == (repo.key_file is None):
            problems.append(
                ValidationError(
                    path,
                    "give exactly one of 'password' ({env: VAR} or {file: PATH}) or 'key_file'",
                )
            )
        size = repo.chunk_size
        if not (_MIN_CHUNK <= size <= _MAX_CHUNK and size & (size - 1) == 0):
            problems.append(
                ValidationError(
                    f"{path}.chunk_size",
                    f"{size} bytes is not allowed; use a power of two from 64KiB to 16MiB",
                )
            )
    for pol in res.policies:
        if pol.interval_seconds > pol.rpo_seconds:
            problems.append(
                ValidationError(
                    f"policies.{pol.name}.interval",
                    f"{pol.interval_seconds}s is longer than the rpo ({pol.rpo_seconds}s); "
                    "points must be taken at least once per rpo",
                )
            )
    problems += _check_groups(res, incoming)
    for plan in res.plans:
        problems += _check_plan(plan, res)
    return problems


def _check_site(site: Site) -> list[ValidationError]:
    path = f"sites.{site.name}"
    problems: list[ValidationError] = []
    if site.driver is SiteDriver.LIBVIRT:
        if not site.uri:
            problems.append(
                ValidationError(f"{path}.uri", "a libvirt site needs 'uri' (e.g. qemu:///system)")
            )
        for extra in ("cloud", "region"):
            if getattr(site, extra):
                problems.append(
                    ValidationError(f"{path}.{extra}", "only applies to openstack sites")
                )
    if site.driver is SiteDriver.OPENSTACK:
        if not site.cloud:
            problems.append(
                ValidationError(
                    f"{path}.cloud", "an openstack site needs 'cloud' (a clouds.yaml entry)"
                )
            )
        if site.uri:
            problems.append(ValidationError(f"{path}.uri", "only applies to libvirt sites"))
        problems += _check_compute_hosts(path, site.compute_hosts)
    elif site.compute_hosts:
        problems.append(
            ValidationError(
                f"{path}.compute_hosts",
                "only applies to openstack sites (Nova compute host -> libvirt URI)",
            )
        )
    return problems


# Haven reaches a guest through QEMU's agent in libvirt's system instance, where Nova's
# domains live: qemu[+transport]://[user@][host]/system[?query]
_COMPUTE_URI = re.compile(
    r"qemu(\+(ssh|libssh|libssh2|tls|tcp|unix|ext))?://(?P<auth>[^/@?]*@)?[^/?]*/system(\?.*)?"
)


def _check_compute_hosts(path: str, hosts: dict[str, str]) -> list[ValidationError]:
    problems: list[ValidationError] = []
    if hosts and importlib.util.find_spec("libvirt") is None:
        problems.append(
            ValidationError(
                f"{path}.compute_hosts",
                "reaching compute hosts needs "
                "libvirt-python on Haven's host (pip install "
                "'haven[libvirt]'); install it or remove the field",
            )
        )
    for host, uri in hosts.items():
        where = f"{path}.compute_hosts.{host}"
        if not host or host != host.strip() or any(c.isspace() for c in host):
            problems.append(
                ValidationError(
                    where,
                    "a Nova compute host name (as in OS-EXT-SRV-ATTR:host or hypervisor_hostname)",
                )
            )
            continue
        m = _COMPUTE_URI.fullmatch(uri)
        if m is None:
            problems.append(
                ValidationError(
                    where,
                    "not a libvirt URI Haven can use: give the "
                    "host's QEMU system instance, e.g. qemu+tls://compute-1/system or "
                    "qemu+ssh://haven@compute-1/system",
                )
            )
        elif m.group("auth") and ":" in m.group("auth"):
            problems.append(
                ValidationError(
                    where,
                    "the URI carries a password: credentials "
                    "do not belong in the spec (use SSH keys or TLS certificates)",
                )
            )
    return problems


def _check_groups(res: Resources, incoming: frozenset[str]) -> list[ValidationError]:
    problems: list[ValidationError] = []
    sites = {s.name for s in res.sites}
    policies = res.by_name(ResourceKind.POLICY)
    repos = {r.name for r in res.repositories}
    claimed: dict[tuple[str, str, str], str] = {}
    for group in sorted(res.groups, key=lambda g: (g.name in incoming, g.name)):
        path = f"groups.{group.name}"
        for field, site in (("source", group.source_site), ("target", group.target_site)):
            if site not in sites:
                problems.append(
                    ValidationError(f"{path}.{field}", f"unknown site {site!r} {_known(sites)}")
                )
        if group.source_site == group.target_site:
            problems.append(
                ValidationError(
                    f"{path}.target", "must differ from 'source': DR needs another site"
                )
            )
        policy = policies.get(group.policy)
        if policy is None:
            problems.append(
                ValidationError(
                    f"{path}.policy", f"unknown policy {group.policy!r} {_known(policies)}"
                )
            )
        if group.repository is not None and group.repository not in repos:
            problems.append(
                ValidationError(
                    f"{path}.repository", f"unknown repository {group.repository!r} {_known(repos)}"
                )
            )
        if policy and policy.data_path is DataPath.REPOSITORY and group.repository is None:
            problems.append(
                ValidationError(
                    f"{path}.repository",
                    f"policy {policy.name!r} uses data_path 'repository'; name one {_known(repos)}",
                )
            )
        if policy and policy.data_path is DataPath.CINDER_BACKUP:
            drivers = {x.name: x.driver for x in res.sites}
            for end in (group.source_site, group.target_site):
                if end in drivers and drivers[end] is not SiteDriver.OPENSTACK:
                    problems.append(
                        ValidationError(
                            f"{path}.policy",
                            f"policy {policy.name!r} uses data_path 'cinder-backup', which "
                            f"needs OpenStack sites; site {end!r} is {drivers[end].value} "
                            "(use data_path: repository)",
                        )
                    )
        problems += _check_members(group, policy.consistency if policy else None)
        for index, member in enumerate(group.members):
            key = (group.source_site, member.kind.value, member.ref)
            other = claimed.setdefault(key, group.name)
            if other != group.name:
                problems.append(
                    ValidationError(
                        f"{path}.members[{index}]",
                        f"{member.kind.value} {member.ref!r} at site {group.source_site!r} is "
                        f"already in group {other!r}; a {member.kind.value} belongs to one group",
                    )
                )
    return problems


def _check_members(
    group: ProtectionGroup, consistency: ConsistencyRequirement | None
) -> list[ValidationError]:
    problems: list[ValidationError] = []
    seen: dict[tuple[MemberKind, str], int] = {}
    for index, member in enumerate(group.members):
        path = f"groups.{group.name}.members[{index}]"
        key = (member.kind, member.ref)
        if key in seen:
            problems.append(
                ValidationError(
                    path,
                    f"{member.kind.value} {member.ref!r} is listed twice "
                    f"(also members[{seen[key]}])",
                )
            )
        seen.setdefault(key, index)
        if member.kind is MemberKind.VOLUME and member.quiesce is QuiesceMethod.AGENT:
            problems.append(
                ValidationError(
                    f"{path}.quiesce",
                    "a standalone volume has no guest agent; use 'none' or 'hook'",
                )
            )
        if member.quiesce is QuiesceMethod.HOOK and not member.pre_freeze:
            problems.append(
                ValidationError(
                    f"{path}.hooks.pre_freeze",
                    "quiesce 'hook' needs at least one "
                    "pre_freeze hook that quiesces the application",
                )
            )
        if (
            consistency is ConsistencyRequirement.APPLICATION
            and member.quiesce is QuiesceMethod.NONE
        ):
            problems.append(
                ValidationError(
                    f"{path}.quiesce",
                    "the group's policy requires application "
                    "consistency; use 'agent' or 'hook', or relax the policy's "
                    "consistency",
                )
            )
    return problems


def _check_plan(plan: RecoveryPlan, res: Resources) -> list[ValidationError]:
    path = f"plans.{plan.name}"
    groups = res.by_name(ResourceKind.GROUP)
    group = groups.get(plan.group)
    problems: list[ValidationError] = []
    if plan.target_site is not None and plan.target_site not in {s.name for s in res.sites}:
        problems.append(
            ValidationError(
                f"{path}.target",
                f"unknown site {plan.target_site!r} {_known(s.name for s in res.sites)}",
            )
        )
    if group is None:
        problems.append(
            ValidationError(f"{path}.group", f"unknown group {plan.group!r} {_known(groups)}")
        )
        return problems
    servers = group.servers()
    placed: dict[str, int] = {}
    for i, stage in enumerate(plan.stages):
        for j, server in enumerate(stage.servers):
            if server not in servers:
                problems.append(
                    ValidationError(
                        f"{path}.stages[{i}].servers[{j}]",
                        f"unknown server {server!r} {_known(servers)}",
                    )
                )
            elif server in placed:
                problems.append(
                    ValidationError(
                        f"{path}.stages[{i}].servers[{j}]",
                        f"server {server!r} is already in stages[{placed[server]}]",
                    )
                )
            else:
                placed[server] = i
        for dep in stage.depends_on:
            if dep not in servers:
                problems.append(
                    ValidationError(
                        f"{path}.stages[{i}].depends_on",
                        f"unknown server {dep!r} {_known(servers)}",
                    )
                )
            elif dep in stage.servers:
                problems.append(
                    ValidationError(
                        f"{path}.stages[{i}].depends_on",
                        f"server {dep!r} is in this stage; a stage cannot depend on itself",
                    )
                )
        problems += _check_probes(f"{path}.stages[{i}].gates", stage.gates, servers, False)
    for server in servers:
        if server not in placed:
            problems.append(
                ValidationError(
                    f"{path}.stages",
                    f"server {server!r} of group {group.name!r} is "
                    "in no stage; add it so it is recovered",
                )
            )
    problems += _check_probes(f"{path}.checks", plan.checks, servers, True)
    for k, ip in enumerate(plan.mappings.ips):
        if ip.server not in servers:
            problems.append(
                ValidationError(
                    f"{path}.mappings.ips[{k}].server",
                    f"unknown server {ip.server!r} {_known(servers)}",
                )
            )
    if not problems:
        problems += _check_cycle(plan)
    return problems


def _check_probes(
    path: str, probes: tuple[Probe, ...], servers: tuple[str, ...], need_server: bool
) -> list[ValidationError]:
    problems: list[ValidationError] = []
    for k, probe in enumerate(probes):
        if probe.server is not None and probe.server not in servers:
            problems.append(
                ValidationError(
                    f"{path}[{k}].server", f"unknown server {probe.server!r} {_known(servers)}"
                )
            )
        if need_server and probe.server is None and probe.kind is not ProbeKind.COMMAND:
            problems.append(ValidationError(f"{path}[{k}].server", "a check names its 'server'"))
    return problems


def _check_cycle(plan: RecoveryPlan) -> list[ValidationError]:
    edges: dict[str, set[str]] = {}
    stage_of: dict[str, int] = {}
    for i, stage in enumerate(plan.stages):
        for server in stage.servers:
            edges[server] = set(stage.depends_on)
            stage_of[server] = i
    cycle = find_cycle(edges)
    if cycle is None:
        return []
    first = stage_of[cycle[0]]
    return [
        ValidationError(
            f"plans.{plan.name}.stages[{first}].depends_on",
            "boot-order cycle: " + " -> ".join(cycle) + " (break one dependency)",
        )
    ]
