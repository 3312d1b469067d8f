"""A policy's ``bandwidth_limit`` reaches the repository backend of ``haven protect`` and
``haven serve`` (every byte they put or get is charged to a token bucket at that rate),
and recovery is not capped. The achieved rate is measured by bench/engine_throttle.py,
not here: no timing in unit tests."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from typer.testing import CliRunner

from haven.cli.main import app
from haven.datamover.backends import TokenBucket
from haven.domain.operations import Operation
from haven.engine import scheduler
from tests.unit.engine.lab import Lab, edited_spec

runner = CliRunner()
MiB = 1024 * 1024
LIMIT = 64 * MiB


def _run(*args: str, code: int = 0) -> dict[str, Any]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == code, res.output
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


@pytest.fixture
def charged(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, int]]:
    """(rate, bytes) of every charge to any token bucket, with the lab's policy capped."""

    def edit(data: dict[str, Any]) -> None:
        data["policies"][0]["bandwidth_limit"] = "64MiB/s"

    _run("apply", "-f", str(edited_spec(lab, edit)))
    seen: list[tuple[float, int]] = []
    take = TokenBucket.take

    def recording(self: TokenBucket, n: int) -> None:
        seen.append((self.rate, n))
        take(self, n)

    monkeypatch.setattr(TokenBucket, "take", recording)
    return seen


def test_protect_is_charged_at_the_policy_rate_and_recovery_is_not(
    charged: list[tuple[float, int]],
) -> None:
    op = _run("protect", "shop")
    sent = int(op["result"]["bytes_sent"])
    assert sent > 0
    assert {rate for rate, _ in charged} == {LIMIT}
    assert sum(n for _, n in charged) >= sent  # packs, plus indexes, heads and locks
    charged.clear()
    _run("failover", "shop")
    assert charged == []  # recovery runs at full speed: RTO first


def test_serve_is_charged_at_the_policy_rate(charged: list[tuple[float, int]]) -> None:
    stop = threading.Event()
    done: list[Operation] = []

    def finished(op: Operation) -> None:
        done.append(op)
        stop.set()

    server = threading.Thread(target=scheduler.serve, args=(stop, finished))
    server.start()
    server.join(120)
    stop.set()
    assert not server.is_alive()
    assert done and done[0].state.value == "succeeded", done
    assert {rate for rate, _ in charged} == {LIMIT}
    assert sum(n for _, n in charged) >= int(done[0].result["bytes_sent"]) > 0


def test_bandwidth_limit_zero_is_refused_naming_the_field(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["policies"][0]["bandwidth_limit"] = 0

    res = runner.invoke(app, ["apply", "-f", str(edited_spec(lab, edit)), "--json"])
    assert res.exit_code == 2, res.output
    (problem,) = json.loads(res.stdout)["error"]["problems"]
    assert problem["path"] == "policies.gold.bandwidth_limit"
    assert "greater than zero" in problem["message"]
    assert "leave bandwidth_limit out" in problem["message"]
