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


class PointRequirement(Enum):
    """Which recovery points a plan may recover from."""

    ANY = "any"  # the newest intact point, whatever its consistency
    APPLICATION = "application"  # only application-consistent points qualify


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
    consistency: PointRequirement = PointRequirement.ANY


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one dependency cycle as a path ``[a, b, ..., a]``, or None if acyclic.

    ``edges[x]`` lists what ``x`` depends on. Nodes missing from ``edges`` are leaves.
    Deterministic: nodes and their dependencies are visited in sorted order and the
    cycle is reported from its smallest name, so the same plan always gives the same
    message. Iterative (an explicit stack): a chain of any length cannot overflow
    Python's recursion limit.
    """
    white, grey, black = 0, 1, 2
    colour: dict[str, int] = {}
    done = object()
    for root in sorted(edges):
        if colour.get(root, white) != white:
            continue
        colour[root] = grey
        path = [root]
        pending = [iter(sorted(edges.get(root, ())))]
        while pending:
            dep = next(pending[-1], done)
            if dep is done:
                colour[path.pop()] = black
                pending.pop()
                continue
            assert isinstance(dep, str)
            state = colour.get(dep, white)
            if state == grey:
                return _from_smallest(path[path.index(dep) :])
            if state == white:
                colour[dep] = grey
                path.append(dep)
                pending.append(iter(sorted(edges.get(dep, ()))))
    return None


def _from_smallest(cycle: list[str]) -> list[str]:
    start = cycle.index(min(cycle))
    rotated = cycle[start:] + cycle[:start]
    return [*rotated, rotated[0]]


def boot_waves(plan: RecoveryPlan) -> list[list[Stage]]:
    """Group stages into waves: every stage in a wave depends only on earlier waves.

    A stage's wave is one more than the latest wave of the stages it depends on (0 without
    dependencies); stages keep their plan order within a wave. Linear in the size of the
    plan (Kahn's algorithm), without recursion. Raises ValueError for a cycle or a
    dependency on a server that is in no stage (a validated plan has neither).
    """
    stage_of = {server: i for i, stage in enumerate(plan.stages) for server in stage.servers}
    needs: list[set[int]] = []
    for stage in plan.stages:
        if any(dep not in stage_of for dep in stage.depends_on):
            raise ValueError(f"plan {plan.name}: a stage depends on a server in no stage")
        needs.append({stage_of[dep] for dep in stage.depends_on})
    waiting = [len(n) for n in needs]
    needed_by: list[list[int]] = [[] for _ in plan.stages]
    for i, deps in enumerate(needs):
        for dep in deps:
            needed_by[dep].append(i)
    wave_of = [0] * len(plan.stages)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    placed = 0
    while ready:
        i = ready.pop()
        placed += 1
        for j in needed_by[i]:
            wave_of[j] = max(wave_of[j], wave_of[i] + 1)
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if placed < len(plan.stages):
        raise ValueError(f"plan {plan.name}: stages form a cycle")
    waves: list[list[Stage]] = [[] for _ in range(max(wave_of, default=-1) + 1)]
    for i, stage in enumerate(plan.stages):
        waves[wave_of[i]].append(stage)
    return waves
