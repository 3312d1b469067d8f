"""Protection policies: how much data may be lost, how often, how long points are kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Tier(Enum):
    GOLD = "gold"
    SILVER = "silver"
    BRONZE = "bronze"


class DataPath(Enum):
    """How volume data travels to the recovery site."""

    REPOSITORY = "repository"  # Haven's own deduplicated, encrypted repository
    CINDER_BACKUP = "cinder-backup"  # OpenStack Cinder backups, exported/imported


class ConsistencyRequirement(Enum):
    """What a recovery point must achieve to be committed."""

    APPLICATION = "application"  # freeze must succeed, else the point fails
    APPLICATION_OR_CRASH = "application-or-crash"  # fall back to crash-consistent
    CRASH = "crash"  # do not quiesce at all


@dataclass(frozen=True, slots=True)
class Retention:
    """Which committed points prune keeps: the union of every rule (restic semantics)."""

    keep_last: int = 1
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self) -> None:
        for name in ("keep_last", "hourly", "daily", "weekly", "monthly"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.keep_last < 1:
            raise ValueError("keep_last must be >= 1: the newest point is always kept")


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    rpo_seconds: int
    interval_seconds: int
    retention: Retention = field(default_factory=Retention)
    tier: Tier = Tier.SILVER
    data_path: DataPath = DataPath.REPOSITORY
    bandwidth_limit: int | None = None  # bytes per second; None = unlimited
    consistency: ConsistencyRequirement = ConsistencyRequirement.APPLICATION_OR_CRASH
    freeze_timeout_seconds: int = 10
    warm_standby: bool = False

    def __post_init__(self) -> None:
        if self.rpo_seconds <= 0:
            raise ValueError("rpo must be greater than zero")
        if not 0 < self.interval_seconds <= self.rpo_seconds:
            raise ValueError("interval must be greater than zero and not longer than the rpo")
        if self.freeze_timeout_seconds <= 0:
            raise ValueError("freeze_timeout must be greater than zero")
