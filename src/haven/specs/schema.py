"""The operator-facing spec format (``apiVersion: haven/v1``), checked field by field.

These models only check shape and field types; references between resources and
boot-order cycles are checked in ``haven.specs.semantic`` on the merged configuration.
Every model refuses unknown fields with the list of valid ones.
"""

from __future__ import annotations

import shlex
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from haven.domain.ids import check_name
from haven.domain.quantities import parse_duration, parse_rate, parse_size

API_VERSION = "haven/v1"


def _duration(value: Any) -> int:
    return parse_duration(value)


def _positive_duration(value: Any) -> int:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return seconds


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
Duration = Annotated[int, BeforeValidator(_duration)]
PositiveDuration = Annotated[int, BeforeValidator(_positive_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Rate = Annotated[int, BeforeValidator(parse_rate)]
Command = Annotated[tuple[str, ...], BeforeValidator(_command)]


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
    uri: str | None = None
    cloud: str | None = None
    region: str | None = None
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    compute_hosts: dict[str, str] = Field(default_factory=dict)  # openstack: host -> libvirt URI


class RepositorySpec(SpecModel):
    name: Name
    url: str
    site: Name | None = None
    password: SecretSpec | None = None
    key_file: str | None = None
    chunk_size: Size = 1024 * 1024
    credentials: dict[str, SecretSpec] = Field(default_factory=dict)


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
    bandwidth_limit: Rate | None = None
    consistency: Literal["application", "application-or-crash", "crash"] = "application-or-crash"
    freeze_timeout: PositiveDuration = 10
    warm_standby: bool = False


class HookSpec(SpecModel):
    command: Command
    timeout: PositiveDuration = 30
    on_error: Literal["fail", "continue"] = "fail"
    where: Literal["guest", "host"] = "guest"


class HooksSpec(SpecModel):
    pre_freeze: list[HookSpec] = Field(default_factory=list)
    post_thaw: list[HookSpec] = Field(default_factory=list)


class MemberSpec(SpecModel):
    server: str | None = None
    volume: str | None = None
    quiesce: Literal["agent", "hook", "none"] | None = None
    volumes: list[str] = Field(default_factory=list)
    hooks: HooksSpec = Field(default_factory=HooksSpec)

    @model_validator(mode="after")
    def _one_ref(self) -> MemberSpec:
        if (self.server is None) == (self.volume is None):
            raise ValueError("a member names exactly one of 'server' or 'volume'")
        if self.volume is not None and self.volumes:
            raise ValueError("'volumes' selects volumes of a server member; remove it here")
        return self


class GroupSpec(SpecModel):
    name: Name
    source: Name
    target: Name
    policy: Name
    repository: Name | None = None
    description: str = ""
    members: list[MemberSpec] = Field(min_length=1)


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
    servers: list[str] = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    gates: list[ProbeSpec] = Field(default_factory=list)
    post_boot: list[HookSpec] = Field(default_factory=list)


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
    ips: list[IpMappingSpec] = Field(default_factory=list)
    name_suffix: str = ""


class TestBubbleSpec(SpecModel):
    network: str
    cidr: str | None = None  # a bubble Haven creates; default: the application's subnet


class PlanSpec(SpecModel):
    name: Name
    group: Name
    target: Name | None = None
    stages: list[StageSpec] = Field(min_length=1)
    mappings: MappingsSpec = Field(default_factory=MappingsSpec)
    test_bubble: TestBubbleSpec | None = None
    checks: list[ProbeSpec] = Field(default_factory=list)


class SpecDocument(SpecModel):
    apiVersion: Literal["haven/v1"] = API_VERSION
    sites: list[SiteSpec] = Field(default_factory=list)
    repositories: list[RepositorySpec] = Field(default_factory=list)
    policies: list[PolicySpec] = Field(default_factory=list)
    groups: list[GroupSpec] = Field(default_factory=list)
    plans: list[PlanSpec] = Field(default_factory=list)
