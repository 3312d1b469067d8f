"""What the API reads and answers: pydantic models of its own, never domain objects
(a domain dataclass may gain a field that must not be shown; here each field shown is
chosen). Requests refuse unknown fields (422 naming the field)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
ID_PATTERN = r"^[a-z]{2,8}-[0-9a-z-]{1,64}$"  # operation and point ids (op-..., pt-...)
SubmitKind = Literal["protect", "test-failover", "cleanup", "failover", "failback"]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Link(Out):
    rel: str
    href: str


class Version(Out):
    id: str
    status: Literal["CURRENT", "SUPPORTED", "DEPRECATED", "EXPERIMENTAL"]
    links: list[Link]


class Versions(Out):
    versions: list[Version]


class Problem(Out):
    path: str
    message: str


class ErrorBody(Out):
    type: str
    message: str
    retryable: bool
    exit_code: int
    problems: list[Problem] | None = None
    request_id: str


class ErrorDocument(Out):
    error: ErrorBody


class ResourceOut(Out):
    kind: Literal["site", "repository", "policy", "group", "plan"]
    name: str
    project: str | None = None  # groups: the owning project; plans: their group's
    spec: dict[str, Any]  # the resource's fields (secret references shown as present/absent)


class ResourceList(Out):
    items: list[ResourceOut]
    next_marker: str | None = None  # pass as ?marker= for the next page; None: the last


class StepOut(Out):
    seq: int
    name: str
    state: str
    started_at: datetime
    finished_at: datetime | None
    detail: str


class OperationOut(Out):
    id: str
    kind: str
    group: str
    state: str
    created_at: datetime
    finished_at: datetime | None
    params: dict[str, str]
    result: dict[str, str]
    error: str
    error_type: str
    exit_code: int | None
    steps: list[StepOut] = Field(default_factory=list)
    links: list[Link]


class GroupStateOut(Out):
    group: str
    state: str  # the group's state after the change (e.g. suspended, protected)


class OperationList(Out):
    operations: list[OperationOut]
    next_marker: str | None  # pass as ?marker= for the next page; None: the last page


class PointOut(Out):
    id: str
    group: str
    state: str
    created_at: datetime
    consistency: str
    consistency_reason: str
    parent: str | None
    volumes: int
    bytes_read: int
    bytes_sent: int
    freeze_window_ms: float | None
    damaged: bool


class PointList(Out):
    points: list[PointOut]  # newest first
    next_marker: str | None  # pass as ?marker= for the next page; None: the last page


class StatusOut(Out):
    group: str
    state: str
    compliance: str
    rpo_seconds: int
    last_point: str | None
    last_point_age_seconds: float | None
    last_point_consistency: str | None
    active_site: str
    standby_site: str
    last_operation: str | None
    last_operation_kind: str | None
    last_operation_state: str | None
    busy_with: str | None


class StatusList(Out):
    groups: list[StatusOut]


class FieldChangeOut(Out):
    path: str  # values are not shown: a diff could quote a secret reference


class ChangeOut(Out):
    kind: str
    name: str
    action: Literal["create", "update", "unchanged"]
    fields: list[FieldChangeOut]


class ApplyOut(Out):
    dry_run: bool
    changed: bool
    changes: list[ChangeOut]


class OperationSubmit(BaseModel):
    """``group`` for protect; ``plan`` for the others; ``point`` for failover and
    test-failover (default: the newest intact point); ``planned`` for failover."""

    model_config = ConfigDict(extra="forbid")
    kind: SubmitKind
    group: str | None = Field(None, pattern=NAME_PATTERN)
    plan: str | None = Field(None, pattern=NAME_PATTERN)
    point: str | None = Field(None, pattern=ID_PATTERN, max_length=80)
    planned: bool = False


class ProjectUsageOut(Out):
    """One project's usage in the window (``project`` null: the operator's own groups).
    Byte counts are bytes; ``stored_bytes`` is measured now (null: not measured)."""

    project: str | None
    groups: int
    protected_gb_hours: float
    stored_bytes: int | None
    bytes_between_sites: int
    repository_bytes: int
    points_taken: int
    drills_run: int
    drills_failed: int
    failovers_run: int
    failovers_failed: int
    failbacks_run: int
    failbacks_failed: int


class UsageOut(Out):
    start: datetime
    end: datetime
    stored_at: datetime | None
    projects: list[ProjectUsageOut]


class QuotaLineOut(Out):
    limit: int | None  # null: unlimited
    in_use: int


class QuotaOut(Out):
    project: str
    groups: QuotaLineOut
    protected_bytes: QuotaLineOut
    points: QuotaLineOut


class QuotaList(Out):
    quotas: list[QuotaOut]


class QuotaUpdate(BaseModel):
    """The limits to change (null: unlimited; absent: unchanged)."""

    model_config = ConfigDict(extra="forbid")
    groups: int | None = Field(default=None, ge=0)
    protected_bytes: int | None = Field(default=None, ge=0)
    points: int | None = Field(default=None, ge=0)


class KeyRegistration(BaseModel):
    """The Barbican secret that holds the project's data key: its href or uuid. The
    tenant stores the key in its own Barbican project and grants Haven's service user
    read access through the secret's ACL first (docs/keys.md)."""

    model_config = ConfigDict(extra="forbid")
    secret_ref: str = Field(min_length=1, max_length=255)


class KeyOut(Out):
    repository: str
    project: str
    key: str  # where the key is (a reference), never key material
