"""Recovery plans: how a group comes back at a target site.

Stages form a DAG over servers: a stage boots its servers once every server named in
``depends_on`` has passed its readiness gates. Independent stages start in parallel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from haven.domain.groups import Hook


class ProbeKind(Enum):
    AGENT = "agent"  # the guest agent answers
    TCP = "tcp"  # a TCP port accepts connections
    COMMAND = "command"  # a command exits 0 (in the guest, or on the Haven host)


@dataclass(frozen=True, slots=True)
class Probe:
    """A readiness gate or a verification check."""

    kind: ProbeKind
    timeout_seconds: int = 300
    port: int | None = None
    command: tuple[str, ...] = ()
    server: str | None = None  # for checks: which server; gates apply to their stage's


@dataclass(frozen=True, slots=True)
class Stage:
    servers: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    gates: tuple[Probe, ...] = ()
    post_boot: tuple[Hook, ...] = ()
    name: str = ""


@dataclass(frozen=True, slots=True)
class IpMapping:
    server: str
    network: str
    ip: str


@dataclass(frozen=True, slots=True)
class Mappings:
    """Source name -> target name. Unmapped names are used unchanged."""

    networks: dict[str, str] = field(default_factory=dict)
    subnets: dict[str, str] = field(default_factory=dict)
    flavors: dict[str, str] = field(default_factory=dict)
    keypairs: dict[str, str] = field(default_factory=dict)
    security_groups: dict[str, str] = field(default_factory=dict)
    ips: tuple[IpMapping, ...] = ()
    name_suffix: str = ""


@dataclass(frozen=True, slots=True)
class TestBubble:
    """The isolated network a drill boots into; cleanup removes it.

    ``cidr``: the subnet of a bubble Haven creates (sites that create networks); None: the
    application's own subnet when the point records exactly one (its fixed IPs then fit),
    else ``DEFAULT_BUBBLE_CIDR``."""

    network: str
    cidr: str | None = None


DEFAULT_BUBBLE_CIDR = "192.168.250.0/24"


@dataclass(frozen=True, slots=True)
class RecoveryPlan:
    name: str
    group: str
    stages: tuple[Stage, ...]
    mappings: Mappings = field(default_factory=Mappings)
    test_bubble: TestBubble | None = None
    checks: tuple[Probe, ...] = ()
    target_site: str | None = None  # default: the group's target site


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one dependency cycle as a path ``[a, b, ..., a]``, or None if acyclic.

    ``edges[x]`` lists what ``x`` depends on. Nodes missing from ``edges`` are leaves.
    """
    white, grey, black = 0, 1, 2
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for dep in edges.get(node, ()):
            state = colour.get(dep, white)
            if state == grey:
                return [*stack[stack.index(dep) :], dep]
            if state == white:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(edges):
        if colour.get(node, white) == white:
            found = visit(node)
            if found:
                return found
    return None


def boot_waves(plan: RecoveryPlan) -> list[list[Stage]]:
    """Group stages into waves: every stage in a wave depends only on earlier waves.

    Assumes a validated (acyclic, fully resolved) plan.
    """
    placed: set[str] = set()
    remaining = list(plan.stages)
    waves: list[list[Stage]] = []
    while remaining:
        wave = [s for s in remaining if set(s.depends_on) <= placed]
        if not wave:
            raise ValueError(f"plan {plan.name}: stages form a cycle")
        waves.append(wave)
        for stage in wave:
            placed.update(stage.servers)
        remaining = [s for s in remaining if s not in wave]
    return waves
