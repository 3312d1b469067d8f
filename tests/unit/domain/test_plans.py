from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.domain.plans import RecoveryPlan, Stage, boot_waves, find_cycle


def test_find_cycle_reports_the_path() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    n = draw(st.integers(min_value=1, max_value=12))
    nodes = [f"s{i}" for i in range(n)]
    return {
        node: draw(st.lists(st.sampled_from(nodes[:i]), unique=True)) if i else []
        for i, node in enumerate(nodes)
    }


@given(dags())
def test_dags_have_no_cycle_and_waves_respect_dependencies(edges: dict[str, list[str]]) -> None:
    assert find_cycle(edges) is None
    plan = RecoveryPlan("p", "g", tuple(Stage((n,), tuple(d)) for n, d in edges.items()))
    booted: set[str] = set()
    waves = boot_waves(plan)
    for wave in waves:
        for stage in wave:
            assert set(stage.depends_on) <= booted
        booted.update(s for stage in wave for s in stage.servers)
    assert booted == set(edges)


@given(dags(), st.data())
def test_adding_a_back_edge_creates_a_cycle(
    edges: dict[str, list[str]], data: st.DataObject
) -> None:
    nodes = list(edges)
    if len(nodes) < 2:
        return
    low = data.draw(st.integers(0, len(nodes) - 2))
    high = data.draw(st.integers(low + 1, len(nodes) - 1))
    # make a path high -> low exist, then add low -> high
    edges[nodes[high]] = [*edges[nodes[high]], nodes[low]]
    edges[nodes[low]] = [*edges[nodes[low]], nodes[high]]
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1]


def test_long_chains_need_no_recursion() -> None:
    """Far beyond Python's recursion limit (1000 frames)."""
    n = 20_000
    edges = {f"s{i:05d}": [f"s{i - 1:05d}"] if i else [] for i in range(n)}
    assert find_cycle(edges) is None
    plan = RecoveryPlan("p", "g", tuple(Stage((k,), tuple(d)) for k, d in edges.items()))
    waves = boot_waves(plan)
    assert len(waves) == n and [w[0].servers[0] for w in waves] == sorted(edges)
    edges["s00000"] = [f"s{n - 1:05d}"]
    cycle = find_cycle(edges)
    assert cycle is not None and len(cycle) == n + 1
    assert cycle[:3] == ["s00000", f"s{n - 1:05d}", f"s{n - 2:05d}"]


def test_the_reported_cycle_is_the_same_whatever_the_order_of_dependencies() -> None:
    """Sets of dependencies iterate in hash order; the report must not follow it."""
    a = find_cycle({"a": {"f", "d", "b", "e", "c"}, "b": {"a"}, "c": {"a"}, "d": {"e"},
                    "e": {"d"}, "f": {"a"}})  # fmt: skip
    assert a == ["a", "b", "a"]
    assert find_cycle({"z": ["y"], "y": ["x"], "x": ["z"]}) == ["x", "z", "y", "x"]


def test_a_stage_depending_on_a_server_in_no_stage_is_refused() -> None:
    plan = RecoveryPlan("p", "g", (Stage(("a",), ("ghost",)),))
    with pytest.raises(ValueError, match="in no stage"):
        boot_waves(plan)
