"""Guest agents of OpenStack servers, through their compute host's libvirt.

Nova's API cannot reach a guest agent. Where the site's spec says how Haven reaches each
compute host's libvirt (``compute_hosts``: Nova host name -> libvirt URI), a server's
domain is its ``OS-EXT-SRV-ATTR:instance_name`` on its ``OS-EXT-SRV-ATTR:hypervisor_hostname``
(or compute service host), both admin-only attributes, and its agent answers pings and
runs commands (readiness gates and checks of kind agent and command, hooks, the sync before
a stop). The quiesce ladder (``quiesce``) uses the same map for its freeze.

Errors are haven.sites errors that name the host, never the URI (it may carry credentials).
libvirt-python is imported on first use only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from haven.sites.base import ExecResult
from haven.sites.errors import (
    GuestAgentError,
    SiteConflict,
    SiteError,
    SiteNotFound,
    UnsupportedCapability,
)

_ERRORS = (SiteError, SiteNotFound, SiteConflict)


class ComputeHosts:
    def __init__(self, uris: Mapping[str, str]) -> None:
        self._uris = dict(uris)
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._uris)

    def agent_ping(self, server: Any, timeout_s: float) -> bool:
        from haven.sites.libvirt import agent

        try:
            dom = self.domain(server)
        except _ERRORS:
            return False
        return bool(agent.ping(dom, timeout_s))

    def guest_exec(
        self, server: Any, argv: Sequence[str], timeout_s: float, stdin: bytes | None
    ) -> ExecResult:
        from haven.sites.libvirt import agent

        return agent.guest_exec(self.domain(server), argv, timeout_s, stdin)

    def domain(self, server: Any) -> Any:
        """The server's libvirt domain (SiteNotFound / UnsupportedCapability saying why)."""
        if not self._uris:
            raise UnsupportedCapability("no compute_hosts configured: no guest agent access")
        names = [
            getattr(server, "hypervisor_hostname", None),
            getattr(server, "compute_host", None),
        ]
        names = [n for n in names if n]
        domain = getattr(server, "instance_name", None)
        if not names or not domain:
            raise UnsupportedCapability(
                f"server {server.name}: its host and instance name are not visible "
                "(OS-EXT-SRV-ATTR: admin-only attributes)"
            )
        host = next((n for n in names if n in self._uris), None)
        if host is None:
            raise UnsupportedCapability(
                f"server {server.name}: compute_hosts has no libvirt URI for host {names[0]!r}"
            )
        uri = self._uris[host]
        from haven.sites.libvirt import conn as lv

        try:
            c = self._connection(uri)
            with lv.libvirt_errors(f"domain {domain} on {host}"):
                return c.lookupByName(domain)
        except _ERRORS as exc:
            with self._lock:
                self._open.pop(uri, None)
            text = str(exc).replace(uri, "<uri>")
            if isinstance(exc, SiteNotFound):
                raise SiteNotFound(f"server {server.name}: {text}") from None
            raise GuestAgentError(f"server {server.name} on {host}: {text}") from None

    def _connection(self, uri: str) -> Any:
        from haven.sites.libvirt import conn as lv

        with self._lock:
            c = self._open.get(uri)
            if c is not None:
                with contextlib.suppress(Exception):
                    if c.isAlive():
                        return c
            c = self._open[uri] = lv.connect(uri)
            return c

    def close(self) -> None:
        with self._lock:
            for c in self._open.values():
                with contextlib.suppress(Exception):
                    c.close()
            self._open.clear()
