"""Ordered freeze -> snapshot -> reverse thaw, with a bounded freeze window.

Shared by every driver so that the rule is implemented once: never leave a guest frozen.
If a freeze fails or overruns ``freeze_timeout_s``, everything frozen so far is thawed at
once (reverse order), the member whose freeze failed gets a best-effort thaw last (its
agent may have frozen after all), and the point is taken crash-consistent with the reason
-- or not at all when the request says FAIL. Thaws also run in ``finally``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from haven.domain.inventory import Consistency
from haven.sites.base import OnQuiesceFailure, PointRequest, QuiesceAction, QuiesceStep
from haven.sites.errors import QuiesceFailed, SiteError

THAW_ATTEMPTS = 3


class QuiesceOps(Protocol):
    def freeze(self, server_id: str, timeout_s: float) -> None: ...
    def thaw(self, server_id: str, timeout_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class GroupPointOutcome:
    consistency: Consistency
    reason: str | None
    freeze_window_s: float
    steps: tuple[QuiesceStep, ...]
    taken_at: float


def take_group_point(
    ops: QuiesceOps, request: PointRequest, snapshot: Callable[[], None]
) -> GroupPointOutcome:
    """Run ``snapshot()`` (which must capture every member's disks) inside the freeze."""
    steps: list[QuiesceStep] = []
    frozen: list[str] = []
    suspect: str | None = None
    reason: str | None = None
    t_first: float | None = None
    t_last_thaw: float | None = None

    def thaw_all() -> None:
        nonlocal t_last_thaw
        if not frozen and t_last_thaw is not None:
            return
        while frozen:
            sid = frozen.pop()
            for _attempt in range(THAW_ATTEMPTS):  # a frozen guest is an outage: insist
                thawed = _step(
                    steps, sid, QuiesceAction.THAW, partial(ops.thaw, sid, request.freeze_timeout_s)
                )
                if thawed.ok:
                    break
        t_last_thaw = time.monotonic()

    try:
        for member in request.members:
            if not member.quiesce:
                continue
            if t_first is None:
                t_first = time.monotonic()
            step = _step(
                steps,
                member.server_id,
                QuiesceAction.FREEZE,
                partial(ops.freeze, member.server_id, request.freeze_timeout_s),
            )
            if not step.ok:
                reason = f"freeze of {member.server_id} failed: {step.detail}"
                suspect = member.server_id
                break
            frozen.append(member.server_id)
            if step.duration_s > request.freeze_timeout_s:
                reason = (
                    f"freeze of {member.server_id} took {step.duration_s:.3f}s "
                    f"(limit {request.freeze_timeout_s}s)"
                )
                break
        if reason is not None:
            thaw_all()  # the healthy members first, at once; this ends the freeze window
            if suspect is not None:  # then the one that failed, in case it froze late
                _step(steps, suspect, QuiesceAction.THAW, partial(ops.thaw, suspect, 1.0))
            if request.on_quiesce_failure is OnQuiesceFailure.FAIL:
                raise QuiesceFailed(f"point {request.point_id}: {reason}")
        taken_at = time.time()
        snapshot()
    finally:
        thaw_all()
    window = 0.0 if t_first is None or t_last_thaw is None else t_last_thaw - t_first
    consistency = Consistency.CRASH if reason is not None else Consistency.APPLICATION
    if not any(m.quiesce for m in request.members):
        consistency = Consistency.CRASH
        reason = "no member was quiesced"
    return GroupPointOutcome(consistency, reason, window, tuple(steps), taken_at)


def _step(
    steps: list[QuiesceStep], sid: str, action: QuiesceAction, fn: Callable[[], None]
) -> QuiesceStep:
    start = time.monotonic()
    try:
        fn()
        step = QuiesceStep(sid, action, True, time.monotonic() - start)
    except SiteError as exc:
        step = QuiesceStep(sid, action, False, time.monotonic() - start, str(exc))
    steps.append(step)
    return step
