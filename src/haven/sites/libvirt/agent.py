"""QEMU guest agent through libvirt: ping, fsfreeze/thaw, exec.

Contracts:
- ``ping`` starts with a sync carrying a fresh id so that a stale reply buffered in the
  virtio channel (from a command that timed out earlier) cannot be taken for ours. Through
  libvirt this is ``guest-sync``: libvirt itself already sends a sync before every agent
  command and discards stale replies, and the 0xFF sentinel of ``guest-sync-delimited``
  cannot travel through libvirt's string API (the binding fails to decode it).
- ``freeze``/``thaw`` bound the agent call by ``timeout_s`` (libvirt's per-domain agent
  response timeout, whole seconds, at least 1) and raise GuestAgentError when the agent
  does not answer or refuses; they never block forever.
- ``exec`` polls ``guest-exec-status`` (the agent has no completion event) and kills the
  guest process when ``timeout_s`` passes.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import libvirt
import libvirt_qemu

from haven.sites.base import ExecResult
from haven.sites.errors import GuestAgentError, GuestExecError
from haven.sites.libvirt.conn import libvirt_errors

_sync_ids = itertools.count(int(time.time()) % 1_000_000 * 1000)
# A guest-exec whose input-data is much above ~100 KiB wedges the libvirt agent channel
# ("Guest agent not available for now", measured with libvirt 9.0 / qemu-ga 7.2): refuse it.
MAX_STDIN = 64 * 1024
_POLL_S = 0.02  # guest-exec-status polling interval; a round trip is ~100 ms under TCG


def command(
    dom: libvirt.virDomain, execute: str, args: dict[str, Any] | None, timeout_s: float
) -> Any:
    payload: dict[str, Any] = {"execute": execute}
    if args is not None:
        payload["arguments"] = args
    with libvirt_errors(f"agent {execute} on {dom.name()}"):
        try:
            raw = libvirt_qemu.qemuAgentCommand(
                dom, json.dumps(payload), max(1, math.ceil(timeout_s)), 0
            )
        except libvirt.libvirtError as exc:
            raise GuestAgentError(
                f"agent {execute} on {dom.name()}: {exc.get_error_message()}"
            ) from exc
    if raw is None:
        raise GuestAgentError(f"agent {execute} on {dom.name()}: no reply")
    reply = json.loads(raw)
    if "error" in reply:
        raise GuestAgentError(f"agent {execute} on {dom.name()}: {reply['error']}")
    return reply.get("return")


def ping(dom: libvirt.virDomain, timeout_s: float) -> bool:
    """True when the agent answers a sync with our id, then a guest-ping."""
    sync_id = next(_sync_ids)
    try:
        got = command(dom, "guest-sync", {"id": sync_id}, timeout_s)
        if got != sync_id:
            return False
        command(dom, "guest-ping", None, timeout_s)
    except GuestAgentError:
        return False
    return True


def _set_timeout(dom: libvirt.virDomain, timeout_s: float) -> None:
    with libvirt_errors(f"agent timeout on {dom.name()}"):
        dom.agentSetResponseTimeout(max(1, math.ceil(timeout_s)), 0)


def freeze(dom: libvirt.virDomain, timeout_s: float, set_timeout: bool = True) -> int:
    """Freeze all guest filesystems; returns how many were frozen.

    ``set_timeout=False``: the caller has set the domain's agent response timeout already
    (saves a round trip inside the freeze window)."""
    if set_timeout:
        _set_timeout(dom, timeout_s)
    try:
        return int(dom.fsFreeze(None, 0))
    except libvirt.libvirtError as exc:
        raise GuestAgentError(f"fsfreeze of {dom.name()}: {exc.get_error_message()}") from exc


def thaw(dom: libvirt.virDomain, timeout_s: float, set_timeout: bool = True) -> int:
    if set_timeout:
        _set_timeout(dom, timeout_s)
    try:
        return int(dom.fsThaw(None, 0))
    except libvirt.libvirtError as exc:
        raise GuestAgentError(f"fsthaw of {dom.name()}: {exc.get_error_message()}") from exc


def guest_exec(
    dom: libvirt.virDomain, argv: Sequence[str], timeout_s: float, stdin: bytes | None = None
) -> ExecResult:
    if not argv:
        raise GuestExecError("empty command")
    args: dict[str, Any] = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
    if stdin is not None:
        if len(stdin) > MAX_STDIN:
            raise GuestExecError(f"stdin of {len(stdin)} bytes exceeds {MAX_STDIN}")
        args["input-data"] = base64.b64encode(stdin).decode()
    start = time.monotonic()
    try:
        pid = command(dom, "guest-exec", args, min(timeout_s, 10.0))["pid"]
    except GuestAgentError as exc:
        raise GuestExecError(f"cannot start {argv[0]} in {dom.name()}: {exc}") from exc
    deadline = start + timeout_s
    while True:
        status = command(dom, "guest-exec-status", {"pid": pid}, 5.0)
        if status.get("exited"):
            return ExecResult(
                exit_code=int(status.get("exitcode", -1 if "signal" in status else 0)),
                stdout=base64.b64decode(status.get("out-data", "")),
                stderr=base64.b64decode(status.get("err-data", "")),
                duration_s=time.monotonic() - start,
            )
        if time.monotonic() > deadline:
            # the agent cannot cancel a guest-exec; kill the process instead
            with contextlib.suppress(GuestAgentError):
                command(dom, "guest-exec", {"path": "kill", "arg": ["-9", str(pid)]}, 2.0)
            raise GuestExecError(f"{argv[0]} in {dom.name()} did not finish in {timeout_s}s")
        time.sleep(_POLL_S)
