"""Running member hooks (pre-freeze, post-thaw, post-boot) with timeout and on_error.

A hook runs in the guest through the site driver's agent (``where: guest``) or on the
Haven host (``where: host``). A failing hook with ``on_error: fail`` raises HookFailed;
with ``continue`` its failure is reported and the operation goes on. Output is not kept
(it may contain secrets); only exit codes and durations are.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from haven.domain.errors import ExternalError
from haven.domain.groups import Hook, HookWhere, OnError
from haven.sites.base import SiteDriver
from haven.sites.errors import SiteError


class HookFailed(ExternalError):
    retryable = False


@dataclass(frozen=True, slots=True)
class HookOutcome:
    server: str
    command: str
    ok: bool
    duration_s: float
    detail: str = ""


def run_hooks(
    driver: SiteDriver, server: str, server_id: str, hooks: Sequence[Hook], phase: str
) -> list[HookOutcome]:
    outcomes: list[HookOutcome] = []
    for hook in hooks:
        start = time.monotonic()
        ok, detail = _run(driver, server_id, hook)
        outcome = HookOutcome(server, " ".join(hook.command), ok, time.monotonic() - start, detail)
        outcomes.append(outcome)
        if not ok and hook.on_error is OnError.FAIL:
            raise HookFailed(f"{phase} hook {outcome.command!r} on {server} failed: {detail}")
    return outcomes


def _run(driver: SiteDriver, server_id: str, hook: Hook) -> tuple[bool, str]:
    if hook.where is HookWhere.HOST:
        try:
            proc = subprocess.run(
                list(hook.command), capture_output=True, timeout=hook.timeout_seconds, check=False
            )
        except subprocess.TimeoutExpired:
            return False, f"timed out after {hook.timeout_seconds}s"
        except OSError as exc:
            return False, exc.strerror or str(exc)
        return proc.returncode == 0, f"exit {proc.returncode}"
    try:
        res = driver.guest_exec(server_id, list(hook.command), timeout_s=hook.timeout_seconds)
    except SiteError as exc:
        return False, str(exc)
    return res.exit_code == 0, f"exit {res.exit_code}"
