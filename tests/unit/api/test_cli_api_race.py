"""The CLI and the API racing for one group (no Keystone needed): the CLI's actions take
the group lock in the same transaction as their operation row, exactly like an API
submit, so the loser gets ConflictError (exit 4 / 409) and nothing of it is recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.domain.errors import ConflictError
from haven.domain.operations import Operation, OperationKind, OperationState
from haven.engine import api as engine
from haven.engine.scope import Scope
from haven.engine.submit import Submission
from tests.support.api import TenantHome, tenant_home
from tests.unit.api.test_tenancy import wait_done

ALPHA = "p-alpha"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TenantHome]:
    with tenant_home(tmp_path, monkeypatch, ALPHA, "p-beta") as h:
        yield h


def test_a_cli_action_racing_api_submits_records_exactly_one_operation(
    home: TenantHome,
) -> None:
    per_side = 12
    start = threading.Barrier(2 * per_side)
    outcomes: list[tuple[str, object]] = []

    def cli() -> None:
        start.wait()
        try:
            outcomes.append(("cli", engine.protect("shop")))
        except ConflictError as exc:
            outcomes.append(("cli", exc))

    def api() -> None:
        start.wait()
        try:
            op = engine.submit(Submission(OperationKind.PROTECT, "shop"), Scope.of(ALPHA))[0]
            outcomes.append(("api", op))
        except ConflictError as exc:
            outcomes.append(("api", exc))

    threads = [threading.Thread(target=f) for f in (cli, api) for _ in range(per_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    won = [o for _, o in outcomes if isinstance(o, Operation)]
    lost = [o for _, o in outcomes if isinstance(o, ConflictError)]
    assert len(won) == 1 and len(lost) == 2 * per_side - 1, outcomes[:3]
    assert all("is busy" in str(e) for e in lost)
    final = wait_done(won[0].id)
    assert final.state is OperationState.SUCCEEDED, final.error
    recorded = engine.operations("shop", 1000)
    assert [o.id for o in recorded] == [won[0].id]  # no failed leftovers of the losers
    assert not [o for o in engine.operations(None, 1000) if o.state is OperationState.FAILED]


def test_a_cli_action_on_a_group_an_api_submit_holds_is_a_clean_conflict(
    home: TenantHome,
) -> None:
    held, _ = engine.submit(Submission(OperationKind.PROTECT, "shop"), Scope.of(ALPHA))
    try:
        with pytest.raises(ConflictError) as err:
            engine.protect("shop")
        assert held.id in str(err.value) and "haven operations resume" in str(err.value)
        with pytest.raises(ConflictError):
            engine.drill("shop")
    finally:
        assert wait_done(held.id).state is OperationState.SUCCEEDED
    assert [o.id for o in engine.operations("shop", 1000)] == [held.id]
