"""The declared configuration: every site, repository, policy, group and plan."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from haven.domain.groups import ProtectionGroup
from haven.domain.plans import RecoveryPlan
from haven.domain.policies import Policy
from haven.domain.sites import Repository, Site


class ResourceKind(Enum):
    """Kinds in dependency order: a kind may only reference kinds before it."""

    SITE = "site"
    REPOSITORY = "repository"
    POLICY = "policy"
    GROUP = "group"
    PLAN = "plan"

    @property
    def plural(self) -> str:
        irregular = {ResourceKind.REPOSITORY: "repositories", ResourceKind.POLICY: "policies"}
        return irregular.get(self, f"{self.value}s")

    @classmethod
    def parse(cls, text: str) -> ResourceKind:
        """Accept singular, plural and short forms ('groups', 'group', 'pg', 'repo')."""
        aliases = {"repo": "repository", "repos": "repository", "pg": "group", "rp": "plan"}
        word = aliases.get(text.lower(), text.lower())
        for kind in cls:
            if word in (kind.value, kind.plural):
                return kind
        valid = ", ".join(k.plural for k in cls)
        raise ValueError(f"unknown kind {text!r} (valid: {valid})")


Resource = Site | Repository | Policy | ProtectionGroup | RecoveryPlan

KIND_TYPES: dict[ResourceKind, type[Any]] = {
    ResourceKind.SITE: Site,
    ResourceKind.REPOSITORY: Repository,
    ResourceKind.POLICY: Policy,
    ResourceKind.GROUP: ProtectionGroup,
    ResourceKind.PLAN: RecoveryPlan,
}


@dataclass(frozen=True, slots=True)
class Resources:
    sites: tuple[Site, ...] = ()
    repositories: tuple[Repository, ...] = ()
    policies: tuple[Policy, ...] = ()
    groups: tuple[ProtectionGroup, ...] = ()
    plans: tuple[RecoveryPlan, ...] = ()

    def of_kind(self, kind: ResourceKind) -> tuple[Any, ...]:
        items: tuple[Any, ...] = getattr(self, kind.plural)
        return items

    def by_name(self, kind: ResourceKind) -> dict[str, Any]:
        return {item.name: item for item in self.of_kind(kind)}

    def overlay(self, other: Resources) -> Resources:
        """Resources of ``other`` replace same-named ones of ``self``; the rest is kept."""
        merged: dict[str, tuple[Any, ...]] = {}
        for kind in ResourceKind:
            current = self.by_name(kind)
            current.update(other.by_name(kind))
            merged[kind.plural] = tuple(current[name] for name in sorted(current))
        return replace(self, **merged)

    def count(self) -> int:
        return sum(len(self.of_kind(kind)) for kind in ResourceKind)
