"""Named, logged, idempotent workflow steps.

``@engine_step("protect.snapshot")`` turns a function ``fn(op_id, ...)`` into a DBOS step
named after its kind. Each call is also written to the catalog's step log of the
operation (RUNNING, then DONE with a one-line detail, or FAILED with the error), keyed by
the DBOS function id, which is deterministic within a workflow: a step re-run after a crash
updates its own row instead of adding one. ``label=`` distinguishes calls of the same kind
("protect.backup:db/vda").

Steps run at least once: each must be idempotent (look before creating, record what it
created before returning).

A step whose failure the workflow handles itself (a restore that found the point damaged,
after which recovery moves to an older point) returns a ``FailedOutcome`` instead of
raising: the step log shows it FAILED with the result's detail, and DBOS records plain
data rather than an exception it would have to rebuild on replay.

Fault injection for crash tests: ``HAVEN_FAULT_KILL_AT=<kind or kind:label>`` makes the
process SIGKILL itself when a matching step starts (before it does anything).
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from dbos import DBOS

from haven.domain.operations import Step, StepState
from haven.engine import services

P = ParamSpec("P")
R = TypeVar("R")
KILL_ENV = "HAVEN_FAULT_KILL_AT"


class FailedOutcome:
    """Base of step results that report a failure the workflow handles."""

    __slots__ = ()


def _maybe_kill(kind: str, name: str) -> None:
    target = os.environ.get(KILL_ENV)
    if target and target in (kind, name):
        os.kill(os.getpid(), signal.SIGKILL)


def _detail(result: Any) -> str:
    fn = getattr(result, "detail", None)
    if callable(fn):
        return str(fn())[:500]
    return ""


def engine_step(kind: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    def deco(fn: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(fn)
        def logged(op_id: str, *args: Any, label: str = "", **kwargs: Any) -> R:
            name = f"{kind}:{label}" if label else kind
            _maybe_kill(kind, name)
            seq = DBOS.step_id or 0
            cat = services.catalog()
            started = datetime.now(UTC)
            cat.save_step(op_id, Step(seq, name, StepState.RUNNING, started))
            try:
                result = fn(op_id, *args, **kwargs)
            except Exception as exc:
                msg = f"{type(exc).__name__}: {exc}"[:500]
                cat.save_step(
                    op_id, Step(seq, name, StepState.FAILED, started, datetime.now(UTC), msg)
                )
                raise
            state = StepState.FAILED if isinstance(result, FailedOutcome) else StepState.DONE
            cat.save_step(
                op_id, Step(seq, name, state, started, datetime.now(UTC), _detail(result))
            )
            return result

        wrapped: Callable[..., R] = DBOS.step(name=kind)(logged)
        return wrapped

    return deco
