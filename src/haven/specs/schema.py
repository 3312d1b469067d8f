"""The operator-facing spec format (``apiVersion: haven/v1``), checked field by field.

These models only check shape and field types; references between resources and
boot-order cycles are checked in ``haven.specs.semantic`` on the merged configuration.
Every model refuses unknown fields with the list of valid ones.

Size limits (a spec that needs more is split into several groups or plans):
    MAX_RESOURCES  1000 resources of one kind per spec document
    MAX_MEMBERS     500 members per group (servers and volumes)
    MAX_STAGES      500 stages per plan; a stage lists at most MAX_MEMBERS servers
                        and MAX_MEMBERS dependencies
    MAX_HOOKS        32 hooks per list and gates per stage; a plan has at most MAX_MEMBERS
                        checks and IP mappings
    MAX_VOLUMES     128 volumes listed for one member
"""

from __future__ import annotations

import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from haven.domain.ids import check_name
from haven.domain.quantities import parse_duration, parse_rate, parse_size
from haven.domain.tenancy import check_project
from haven.specs.urls import refuse_credentials

API_VERSION = "haven/v1"
MAX_RESOURCES = 1000
MAX_MEMBERS = 500
MAX_STAGES = 500
MAX_HOOKS = 32
MAX_VOLUMES = 128


def _duration(value: Any) -> int:
    return parse_duration(value)


def _positive_duration(value: Any) -> int:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return seconds


def _bandwidth(value: Any) -> int:
    """A cap on replication: 0 is refused, not read as "unlimited" (an operator writing 0
    may mean "send nothing"; either reading would surprise half of them)."""
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; to replicate without a cap, leave bandwidth_limit out") from None


def _command(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = shlex.split(value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = list(value)
    else:
        raise ValueError("a command is a string or a list of strings")
    if not parts:
        raise ValueError("the command is empty")
    return tuple(parts)


Name = Annotated[str, BeforeValidator(lambda v: check_name(v) if isinstance(v, str) else v)]
Project = Annotated[str, BeforeValidator(lambda v: check_project(v) if isinstance(v, str) else v)]
Duration = Annotated[int, BeforeValidator(_duration)]
PositiveDuration = Annotated[int, BeforeValidator(_positive_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
BandwidthLimit = Annotated[int, BeforeValidator(_bandwidth)]
Command = Annotated[tuple[str, ...], BeforeValidator(_command)]
RepositoryUrl = Annotated[
    str,
    BeforeValidator(
        lambda v: (
            refuse_credentials(
                v,
                "give them in the repository's 'password' or 'credentials' "
                "({env: VAR} or {file: PATH}) instead",
            )
            if isinstance(v, str)
            else v
        )
    ),
]
SiteUri = Annotated[
    str,
    BeforeValidator(
        lambda v: (
            refuse_credentials(v, "let libvirt authenticate with SSH keys or its auth.conf instead")
            if isinstance(v, str)
            else v
        )
    ),
]


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            valid = set(cls.model_fields)
            unknown = [k for k in data if k not in valid]
            if unknown:
                listed = ", ".join(sorted(valid))
                raise ValueError(f"unknown field {unknown[0]!r} (valid fields: {listed})")
        elif data is not None and not isinstance(data, BaseModel):
            raise ValueError(f"expected a mapping, got {_kind_of(data)}")
        return data


def _kind_of(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


class SecretSpec(SpecModel):
    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretSpec:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (variable name) or 'file' (path)")
        return self


class SiteSpec(SpecModel):
    name: Name
    driver: Literal["libvirt", "openstack", "fake"]
    uri: SiteUri | None = None
    scratch_dir: str | None = None
    cloud: str | None = None
    region: str | None = None
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    compute_hosts: dict[str, str] = Field(default_factory=dict)  # openstack: host -> libvirt URI


class RepositorySpec(SpecModel):
    name: Name
    url: RepositoryUrl
    site: Name | None = None
    password: SecretSpec | None = None
    key_file: str | None = None
    chunk_size: Size = 1024 * 1024
    credentials: dict[str, SecretSpec] = Field(default_factory=dict)
    # where the data keys of the projects whose groups use this repository live
    key_store: Literal["local", "barbican"] = "local"
    key_cloud: str | None = None  # barbican: the clouds.yaml entry of Haven's service user

    @model_validator(mode="after")
    def _key_cloud_with_barbican(self) -> RepositorySpec:
        if self.key_store == "barbican" and not self.key_cloud:
            raise ValueError(
                "key_store barbican needs key_cloud: the clouds.yaml entry Haven reads the "
                "projects' keys with (its service user)"
            )
        if self.key_store == "local" and self.key_cloud:
            raise ValueError(
                "key_cloud is for key_store barbican; local keys need none (remove key_cloud)"
            )
        return self


class RetentionSpec(SpecModel):
    keep_last: int = Field(1, ge=1)
    hourly: int = Field(0, ge=0)
    daily: int = Field(0, ge=0)
    weekly: int = Field(0, ge=0)
    monthly: int = Field(0, ge=0)


class PolicySpec(SpecModel):
    name: Name
    rpo: PositiveDuration
    interval: PositiveDuration | None = None
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    tier: Literal["gold", "silver", "bronze"] = "silver"
    data_path: Literal["repository", "cinder-backup"] = "repository"
    bandwidth_limit: BandwidthLimit | None = None
    consistency: Literal["application", "application-or-crash", "crash"] = "application-or-crash"
    freeze_timeout: PositiveDuration = 10
    warm_standby: bool = False

    @field_validator("interval")
    @classmethod
    def _within_rpo(cls, value: int | None, info: ValidationInfo) -> int | None:
        rpo = info.data.get("rpo")
        if value is not None and isinstance(rpo, int) and value > rpo:
            raise ValueError(
                f"{value}s is longer than the rpo ({rpo}s); points must be taken at least "
                "once per rpo"
            )
        return value


class HookSpec(SpecModel):
    command: Command
    timeout: PositiveDuration = 30
    on_error: Literal["fail", "continue"] = "fail"
    where: Literal["guest", "host"] = "guest"


class HooksSpec(SpecModel):
    pre_freeze: list[HookSpec] = Field(default_factory=list, max_length=MAX_HOOKS)
    post_thaw: list[HookSpec] = Field(default_factory=list, max_length=MAX_HOOKS)


class MemberSpec(SpecModel):
    server: str | None = None
    volume: str | None = None
    quiesce: Literal["agent", "hook", "none"] | None = None
    volumes: list[str] = Field(default_factory=list, max_length=MAX_VOLUMES)
    hooks: HooksSpec = Field(default_factory=HooksSpec)
    attached_to: str | None = None

    @model_validator(mode="after")
    def _one_ref(self) -> MemberSpec:
        if (self.server is None) == (self.volume is None):
            raise ValueError("a member names exactly one of 'server' or 'volume'")
        if self.volume is not None and self.volumes:
            raise ValueError("'volumes' selects volumes of a server member; remove it here")
        if self.server is not None and self.attached_to is not None:
            raise ValueError(
                "'attached_to' names the server a volume member is attached to; a server "
                "member's attached volumes are protected with it (select them with 'volumes')"
            )
        return self


class GroupSpec(SpecModel):
    name: Name
    source: Name
    target: Name
    policy: Name
    repository: Name | None = None
    description: str = ""
    members: list[MemberSpec] = Field(min_length=1, max_length=MAX_MEMBERS)
    # the Keystone project id that owns the group (absent: operator-owned, seen through
    # the API by admins only); the API forces it to the caller's project for non-admins
    project: Project | None = None


class ProbeSpec(SpecModel):
    type: Literal["agent", "tcp", "command"]
    timeout: PositiveDuration = 300
    port: int | None = Field(None, ge=1, le=65535)
    command: Command | None = None
    server: str | None = None

    @model_validator(mode="after")
    def _fields_for_type(self) -> ProbeSpec:
        if self.type == "tcp" and self.port is None:
            raise ValueError("a 'tcp' probe needs 'port'")
        if self.type == "command" and self.command is None:
            raise ValueError("a 'command' probe needs 'command'")
        if self.type != "tcp" and self.port is not None:
            raise ValueError(f"'port' only applies to 'tcp' probes, not {self.type!r}")
        if self.type != "command" and self.command is not None:
            raise ValueError(f"'command' only applies to 'command' probes, not {self.type!r}")
        return self


class StageSpec(SpecModel):
    name: str = ""
    servers: list[str] = Field(min_length=1, max_length=MAX_MEMBERS)
    depends_on: list[str] = Field(default_factory=list, max_length=MAX_MEMBERS)
    gates: list[ProbeSpec] = Field(default_factory=list, max_length=MAX_HOOKS)
    post_boot: list[HookSpec] = Field(default_factory=list, max_length=MAX_HOOKS)


class IpMappingSpec(SpecModel):
    server: str
    network: str
    ip: str


class MappingsSpec(SpecModel):
    networks: dict[str, str] = Field(default_factory=dict)
    subnets: dict[str, str] = Field(default_factory=dict)
    flavors: dict[str, str] = Field(default_factory=dict)
    keypairs: dict[str, str] = Field(default_factory=dict)
    security_groups: dict[str, str] = Field(default_factory=dict)
    ips: list[IpMappingSpec] = Field(default_factory=list, max_length=MAX_MEMBERS)
    name_suffix: str = ""


class TestBubbleSpec(SpecModel):
    network: str
    cidr: str | None = None  # a bubble Haven creates; default: the application's subnet


class PlanSpec(SpecModel):
    name: Name
    group: Name
    target: Name | None = None
    # empty only for a group with nothing to boot (its volume members are only restored)
    stages: list[StageSpec] = Field(default_factory=list, max_length=MAX_STAGES)
    mappings: MappingsSpec = Field(default_factory=MappingsSpec)
    test_bubble: TestBubbleSpec | None = None
    checks: list[ProbeSpec] = Field(default_factory=list, max_length=MAX_MEMBERS)
    consistency: Literal["any", "application"] = "any"


class SpecDocument(SpecModel):
    apiVersion: Literal["haven/v1"] = API_VERSION
    sites: list[SiteSpec] = Field(default_factory=list, max_length=MAX_RESOURCES)
    repositories: list[RepositorySpec] = Field(default_factory=list, max_length=MAX_RESOURCES)
    policies: list[PolicySpec] = Field(default_factory=list, max_length=MAX_RESOURCES)
    groups: list[GroupSpec] = Field(default_factory=list, max_length=MAX_RESOURCES)
    plans: list[PlanSpec] = Field(default_factory=list, max_length=MAX_RESOURCES)
