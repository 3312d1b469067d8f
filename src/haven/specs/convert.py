"""Spec models to domain objects. Pure mapping: no checks that need other resources."""

from __future__ import annotations

from haven.domain.groups import (
    Hook,
    HookWhere,
    Member,
    MemberKind,
    OnError,
    ProtectionGroup,
    QuiesceMethod,
)
from haven.domain.plans import (
    IpMapping,
    Mappings,
    PointRequirement,
    Probe,
    ProbeKind,
    RecoveryPlan,
    Stage,
    TestBubble,
)
from haven.domain.policies import (
    ConsistencyRequirement,
    DataPath,
    Policy,
    Retention,
    Tier,
)
from haven.domain.resources import Resources
from haven.domain.secrets import SecretRef, SecretSource
from haven.domain.sites import KeyStoreKind, Repository, RepositoryKind, Site, SiteDriver
from haven.specs import schema as s


def to_resources(doc: s.SpecDocument) -> Resources:
    return Resources(
        sites=tuple(_site(x) for x in doc.sites),
        repositories=tuple(_repository(x) for x in doc.repositories),
        policies=tuple(_policy(x) for x in doc.policies),
        groups=tuple(_group(x) for x in doc.groups),
        plans=tuple(_plan(x) for x in doc.plans),
    )


def _secret(spec: s.SecretSpec | None) -> SecretRef | None:
    if spec is None:
        return None
    if spec.env is not None:
        return SecretRef(SecretSource.ENV, spec.env)
    assert spec.file is not None
    return SecretRef(SecretSource.FILE, spec.file)


def _site(x: s.SiteSpec) -> Site:
    return Site(
        name=x.name,
        driver=SiteDriver(x.driver),
        uri=x.uri,
        scratch_dir=x.scratch_dir,
        cloud=x.cloud,
        region=x.region,
        description=x.description,
        labels=dict(x.labels),
        compute_hosts=dict(x.compute_hosts),
    )


def repository_kind(url: str) -> RepositoryKind | None:
    if url.startswith("swift://"):
        return RepositoryKind.SWIFT
    if url.startswith("s3://"):
        return RepositoryKind.S3
    if url.startswith("memory://"):
        return RepositoryKind.MEMORY
    if url.startswith("/"):
        return RepositoryKind.LOCAL
    return None


def _repository(x: s.RepositorySpec) -> Repository:
    return Repository(
        name=x.name,
        url=x.url,
        kind=repository_kind(x.url) or RepositoryKind.LOCAL,
        site=x.site,
        password=_secret(x.password),
        key_file=x.key_file,
        chunk_size=x.chunk_size,
        credentials={k: ref for k, v in x.credentials.items() if (ref := _secret(v))},
        key_store=KeyStoreKind(x.key_store),
        key_cloud=x.key_cloud,
    )


def _policy(x: s.PolicySpec) -> Policy:
    r = x.retention
    return Policy(
        name=x.name,
        rpo_seconds=x.rpo,
        interval_seconds=x.interval if x.interval is not None else max(1, x.rpo // 2),
        retention=Retention(r.keep_last, r.hourly, r.daily, r.weekly, r.monthly),
        tier=Tier(x.tier),
        data_path=DataPath(x.data_path),
        bandwidth_limit=x.bandwidth_limit,
        consistency=ConsistencyRequirement(x.consistency),
        freeze_timeout_seconds=x.freeze_timeout,
        warm_standby=x.warm_standby,
    )


def _hook(x: s.HookSpec) -> Hook:
    return Hook(x.command, x.timeout, OnError(x.on_error), HookWhere(x.where))


def _member(x: s.MemberSpec) -> Member:
    if x.server is not None:
        kind, ref, default_quiesce = MemberKind.SERVER, x.server, "agent"
    else:
        assert x.volume is not None
        kind, ref, default_quiesce = MemberKind.VOLUME, x.volume, "none"
    return Member(
        kind=kind,
        ref=ref,
        quiesce=QuiesceMethod(x.quiesce or default_quiesce),
        volumes=tuple(x.volumes),
        pre_freeze=tuple(_hook(h) for h in x.hooks.pre_freeze),
        post_thaw=tuple(_hook(h) for h in x.hooks.post_thaw),
        attached_to=x.attached_to,
    )


def _group(x: s.GroupSpec) -> ProtectionGroup:
    return ProtectionGroup(
        name=x.name,
        source_site=x.source,
        target_site=x.target,
        policy=x.policy,
        members=tuple(_member(m) for m in x.members),
        repository=x.repository,
        description=x.description,
        project=x.project,
    )


def _probe(x: s.ProbeSpec) -> Probe:
    return Probe(ProbeKind(x.type), x.timeout, x.port, x.command or (), x.server)


def _plan(x: s.PlanSpec) -> RecoveryPlan:
    m = x.mappings
    return RecoveryPlan(
        name=x.name,
        group=x.group,
        target_site=x.target,
        stages=tuple(
            Stage(
                servers=tuple(st.servers),
                depends_on=tuple(st.depends_on),
                gates=tuple(_probe(g) for g in st.gates),
                post_boot=tuple(_hook(h) for h in st.post_boot),
                name=st.name,
            )
            for st in x.stages
        ),
        mappings=Mappings(
            networks=dict(m.networks),
            subnets=dict(m.subnets),
            flavors=dict(m.flavors),
            keypairs=dict(m.keypairs),
            security_groups=dict(m.security_groups),
            ips=tuple(IpMapping(i.server, i.network, i.ip) for i in m.ips),
            name_suffix=m.name_suffix,
        ),
        test_bubble=TestBubble(x.test_bubble.network, x.test_bubble.cidr)
        if x.test_bubble
        else None,
        checks=tuple(_probe(c) for c in x.checks),
        consistency=PointRequirement(x.consistency),
    )
