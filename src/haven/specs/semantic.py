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
from haven.domain.groups import HookWhere, MemberKind, OnError, ProtectionGroup, QuiesceMethod
from haven.domain.plans import PointRequirement, Probe, ProbeKind, RecoveryPlan, find_cycle
from haven.domain.policies import ConsistencyRequirement, DataPath, Policy
from haven.domain.resources import ResourceKind, Resources
from haven.domain.sites import SCRATCH_DIR_HINT, RepositoryKind, Site, SiteDriver
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
        if repo.credentials and repo.kind in (RepositoryKind.LOCAL, RepositoryKind.MEMORY):
            name = sorted(repo.credentials)[0]
            problems.append(
                ValidationError(
                    f"{path}.credentials.{name}",
                    f"a {repo.kind.value} repository takes no credentials (they are for "
                    "s3:// and swift:// repositories); remove them",
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
    for pol in res.policies:  # (interval within rpo: checked by the schema, field by field)
        problems += _check_policy_data_path(pol)
    problems += _check_groups(res, incoming)
    for plan in res.plans:
        problems += _check_plan(plan, res)
    return problems


def _check_policy_data_path(pol: Policy) -> list[ValidationError]:
    """Fields that only the repository data path acts on."""
    if pol.data_path is not DataPath.CINDER_BACKUP:
        return []
    path = f"policies.{pol.name}"
    problems: list[ValidationError] = []
    if pol.warm_standby:
        problems.append(
            ValidationError(
                f"{path}.warm_standby",
                "warm-standby replicas are written from Haven's repository; with data_path "
                "'cinder-backup' there is none (remove warm_standby or use data_path: "
                "repository)",
            )
        )
    if pol.bandwidth_limit is not None:
        problems.append(
            ValidationError(
                f"{path}.bandwidth_limit",
                "Cinder's backup service moves the data with data_path 'cinder-backup' and "
                "Haven cannot cap it; remove bandwidth_limit or use data_path: repository",
            )
        )
    return problems


def _check_site(site: Site) -> list[ValidationError]:
    path = f"sites.{site.name}"
    problems: list[ValidationError] = []
    if site.driver is SiteDriver.LIBVIRT:
        if not site.uri:
            problems.append(
                ValidationError(f"{path}.uri", "a libvirt site needs 'uri' (e.g. qemu:///system)")
            )
        if not site.scratch_dir or not site.scratch_dir.startswith("/"):
            problems.append(ValidationError(f"{path}.scratch_dir", SCRATCH_DIR_HINT))
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
        if not site.region:
            problems.append(
                ValidationError(
                    f"{path}.region", "an openstack site needs 'region' (e.g. RegionOne)"
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
    if site.driver is not SiteDriver.LIBVIRT and site.scratch_dir:
        problems.append(ValidationError(f"{path}.scratch_dir", "only applies to libvirt sites"))
    if site.driver is SiteDriver.FAKE:
        for extra in ("cloud", "region"):
            if getattr(site, extra):
                problems.append(
                    ValidationError(f"{path}.{extra}", "only applies to openstack sites")
                )
        if site.uri and not site.uri.startswith("file:///"):
            problems.append(
                ValidationError(
                    f"{path}.uri",
                    "a fake site's uri is file:///DIR (its state kept in DIR); leave it out "
                    "for an in-memory site",
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
        problems += _check_repository_site(group, res)
        problems += _check_volume_sites(group, res)
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
    problems += _check_hosts_claimed(res)
    return problems


def _check_repository_site(group: ProtectionGroup, res: Resources) -> list[ValidationError]:
    """A repository's ``site`` says where its data lives: never at the site it protects."""
    repo = res.by_name(ResourceKind.REPOSITORY).get(group.repository or "")
    if repo is None or repo.site is None or repo.site != group.source_site:
        return []
    return [
        ValidationError(
            f"groups.{group.name}.repository",
            f"repository {repo.name!r} is at site {repo.site!r}, the site this group "
            "protects: a disaster there would take the points with the servers; use a "
            "repository at another site",
        )
    ]


def _check_volume_sites(group: ProtectionGroup, res: Resources) -> list[ValidationError]:
    """Standalone volumes in points: the libvirt and fake drivers take them; OpenStack's
    does not yet, and a member it would leave out of every point is refused."""
    drivers = {x.name: x.driver for x in res.sites}
    problems: list[ValidationError] = []
    for index, member in enumerate(group.members):
        if member.kind is not MemberKind.VOLUME:
            continue
        for end in (group.source_site, group.target_site):
            if drivers.get(end) is SiteDriver.OPENSTACK:
                problems.append(
                    ValidationError(
                        f"groups.{group.name}.members[{index}].volume",
                        f"site {end!r} is openstack, whose driver cannot take standalone "
                        "volumes into a point yet; protect the server they are attached "
                        "to (a server member protects its attached volumes)",
                    )
                )
                break
    return problems


def _check_hosts_claimed(res: Resources) -> list[ValidationError]:
    """A server that volume members are attached to (a host, recreated around them) is
    not a server member of another group: both would recreate it at recovery."""
    members = {(g.source_site, ref): g.name for g in res.groups for ref in g.servers()}
    problems: list[ValidationError] = []
    for g in res.groups:
        for index, member in enumerate(g.members):
            other = members.get((g.source_site, member.attached_to or ""))
            if member.attached_to and other is not None and other != g.name:
                problems.append(
                    ValidationError(
                        f"groups.{g.name}.members[{index}].attached_to",
                        f"server {member.attached_to!r} is a member of group {other!r}, "
                        "which protects its attached volumes and recreates it; a volume "
                        f"has one owner (list {member.ref!r} in that member's 'volumes')",
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
        if member.attached_to is not None and member.attached_to in group.servers():
            problems.append(
                ValidationError(
                    f"{path}.attached_to",
                    f"volume {member.ref!r} is attached to server {member.attached_to!r}, "
                    "a member of this group that protects its attached volumes already; a "
                    f"volume has one owner: remove this member (select {member.ref!r} "
                    f"with {member.attached_to!r}'s 'volumes' to choose its disks)",
                )
            )
        if member.kind is MemberKind.VOLUME and member.attached_to is None:
            for phase, hooks in (
                ("pre_freeze", member.pre_freeze),
                ("post_thaw", member.post_thaw),
            ):
                for k, hook in enumerate(hooks):
                    if hook.where is HookWhere.GUEST:
                        problems.append(
                            ValidationError(
                                f"{path}.hooks.{phase}[{k}].where",
                                "a volume member without 'attached_to' has no guest to run "
                                "the hook in; use where: host, or name the server it is "
                                "attached to with 'attached_to'",
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
            and member.quiesce is QuiesceMethod.HOOK
        ):
            for k, hook in enumerate(member.pre_freeze):
                if hook.on_error is OnError.CONTINUE:
                    problems.append(
                        ValidationError(
                            f"{path}.hooks.pre_freeze[{k}].on_error",
                            "this member is quiesced by its hooks and the group's policy "
                            "requires application consistency: a failed quiesce hook "
                            "cannot be continued past (use on_error: fail)",
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
    if plan.target_site is not None and plan.target_site == group.source_site:
        problems.append(
            ValidationError(
                f"{path}.target",
                f"site {plan.target_site!r} is where group {group.name!r} runs; recover "
                "at another site",
            )
        )
    # the server members, and the servers recreated around volume members (hosts)
    servers = group.recoverable()
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
        for k, gate in enumerate(stage.gates):
            if (
                gate.server is not None
                and gate.server in servers
                and gate.server not in stage.servers
            ):
                problems.append(
                    ValidationError(
                        f"{path}.stages[{i}].gates[{k}].server",
                        f"server {gate.server!r} is not in this stage; a gate holds back "
                        f"the next stages until its stage's servers are up (this stage: "
                        f"{', '.join(stage.servers)})",
                    )
                )
    for server in servers:
        if server not in placed:
            what = "server" if server in group.servers() else "host of a volume member"
            problems.append(
                ValidationError(
                    f"{path}.stages",
                    f"{what} {server!r} of group {group.name!r} is "
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
    problems += _check_mappings(plan, group, res)
    problems += _check_requirement(plan, group, res)
    if not problems:
        problems += _check_cycle(plan)
    return problems


# mappings that only a site with projects acts on (OpenStack; the fake implements the
# same roles); a libvirt site recreates a server from its captured definition (CPU,
# memory, disks, NICs by network) and uses the test bubble's network as it exists
_OPENSTACK_MAPPINGS = ("subnets", "flavors", "keypairs", "security_groups", "ips")


def _check_mappings(
    plan: RecoveryPlan, group: ProtectionGroup, res: Resources
) -> list[ValidationError]:
    drivers = {x.name: x.driver for x in res.sites}
    target = plan.target_site or group.target_site
    driver = drivers.get(target)
    if driver is not SiteDriver.LIBVIRT:
        return []
    problems = [
        ValidationError(
            f"plans.{plan.name}.mappings.{name}",
            f"applies to OpenStack sites; site {target!r} is {driver.value}, which recreates "
            "a server from its captured definition (CPU, memory, disks, NICs): only "
            "'networks' and 'name_suffix' apply there",
        )
        for name in _OPENSTACK_MAPPINGS
        if getattr(plan.mappings, name)
    ]
    if plan.test_bubble is not None and plan.test_bubble.cidr is not None:
        problems.append(
            ValidationError(
                f"plans.{plan.name}.test_bubble.cidr",
                f"site {target!r} is libvirt: the bubble network must exist there and Haven "
                "does not create its subnet; remove 'cidr' (it applies to OpenStack sites)",
            )
        )
    return problems


def _check_requirement(
    plan: RecoveryPlan, group: ProtectionGroup, res: Resources
) -> list[ValidationError]:
    if plan.consistency is not PointRequirement.APPLICATION:
        return []
    policy = res.by_name(ResourceKind.POLICY).get(group.policy)
    if policy is None or policy.consistency is not ConsistencyRequirement.CRASH:
        return []
    return [
        ValidationError(
            f"plans.{plan.name}.consistency",
            f"requires application-consistent points, but group {group.name!r}'s policy "
            f"{policy.name!r} takes crash-consistent ones only (consistency: crash); "
            "change one of them",
        )
    ]


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
    # a long cycle is shown by its ends: the message stays one readable line
    shown = cycle if len(cycle) <= 12 else [*cycle[:8], f"({len(cycle) - 11} more)", *cycle[-3:]]
    return [
        ValidationError(
            f"plans.{plan.name}.stages[{first}].depends_on",
            "boot-order cycle: " + " -> ".join(shown) + " (break one dependency)",
        )
    ]
