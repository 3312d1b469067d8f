"""Opening libvirt connections and turning libvirt errors into Haven's site errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import libvirt

from haven.sites.errors import (
    GuestAgentError,
    SiteConflict,
    SiteError,
    SiteNotFound,
    SiteUnavailable,
)

# Codes looked up by name: older bindings lack some constants.
_NOT_FOUND = {
    "VIR_ERR_NO_DOMAIN",
    "VIR_ERR_NO_NETWORK",
    "VIR_ERR_NO_STORAGE_VOL",
    "VIR_ERR_NO_STORAGE_POOL",
    "VIR_ERR_NO_DOMAIN_CHECKPOINT",
}
_AGENT = {"VIR_ERR_AGENT_UNRESPONSIVE", "VIR_ERR_AGENT_COMMAND_TIMEOUT", "VIR_ERR_AGENT_UNSYNCED"}
_UNAVAILABLE = {
    "VIR_ERR_NO_CONNECT",
    "VIR_ERR_SYSTEM_ERROR",
    "VIR_ERR_RPC",
    "VIR_ERR_AUTH_UNAVAILABLE",
}
_CONFLICT = {"VIR_ERR_OPERATION_INVALID", "VIR_ERR_DOM_EXIST", "VIR_ERR_STORAGE_VOL_EXIST"}


def _codes(names: set[str]) -> frozenset[int]:
    return frozenset(getattr(libvirt, n) for n in names if hasattr(libvirt, n))


NOT_FOUND, AGENT, UNAVAILABLE, CONFLICT = map(_codes, (_NOT_FOUND, _AGENT, _UNAVAILABLE, _CONFLICT))


def translate(exc: libvirt.libvirtError, what: str) -> SiteError | SiteNotFound | SiteConflict:
    code = exc.get_error_code()
    msg = f"{what}: {exc.get_error_message()}"
    if code in NOT_FOUND:
        return SiteNotFound(msg)
    if code in AGENT or "agent" in (exc.get_error_message() or "").lower():
        return GuestAgentError(msg)
    if code in UNAVAILABLE:
        return SiteUnavailable(msg)
    if code in CONFLICT:
        return SiteConflict(msg)
    return SiteError(msg)


@contextmanager
def libvirt_errors(what: str) -> Iterator[None]:
    """Re-raise libvirt errors raised inside the block as Haven site errors."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise translate(exc, what) from exc


def _silence(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we raise them instead."""


def connect(uri: str) -> libvirt.virConnect:
    libvirt.registerErrorHandler(_silence, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise SiteUnavailable(f"cannot connect to libvirt: {exc.get_error_message()}") from exc
    if conn is None:
        raise SiteUnavailable("cannot connect to libvirt")
    return conn
