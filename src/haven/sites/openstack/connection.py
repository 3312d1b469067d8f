"""Connections to one OpenStack site: a ``clouds.yaml`` cloud and a region.

Credentials stay in ``clouds.yaml``; Haven stores only the cloud and region names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import openstack
import openstack.config
import openstack.connection

from haven.sites.openstack.errors import OpenStackSiteError, OpenStackTimeout

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SiteRef:
    """Where a site lives: ``cloud`` names a clouds.yaml entry, ``region`` a region."""

    cloud: str
    region: str
    config_file: str | None = None  # a clouds.yaml path; None: the usual search path

    def __str__(self) -> str:
        return f"{self.cloud}/{self.region}"


def connect(ref: SiteRef) -> openstack.connection.Connection:
    files = [ref.config_file] if ref.config_file else None
    config = openstack.config.OpenStackConfig(config_files=files)
    region = config.get_one(cloud=ref.cloud, region_name=ref.region)
    return openstack.connection.Connection(config=region)


def wait(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 300.0,
    fail: Callable[[T], bool] | None = None,
) -> T:
    """Poll ``probe`` until it returns a value; ``fail`` marks a terminal error state."""
    deadline = time.monotonic() + timeout
    delay = 0.3
    while True:
        value = probe()
        if value is not None:
            if fail is not None and fail(value):
                raise OpenStackSiteError(f"{what}: failed ({_status(value)})")
            return value
        if time.monotonic() > deadline:
            raise OpenStackTimeout(f"{what}: not done after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 3.0)


def wait_status(
    what: str,
    fetch: Callable[[], Any],
    ready: set[str],
    error: frozenset[str] = frozenset({"error", "error_restoring", "error_deleting", "ERROR"}),
    timeout: float = 300.0,
) -> Any:
    """Poll a resource until its status is one of ``ready``; raise on an error status."""

    def probe() -> Any:
        res = fetch()
        st = _status(res)
        if st in ready or st in error:
            return res
        return None

    return wait(what, probe, timeout, fail=lambda r: _status(r) in error)


def _status(res: Any) -> str:
    return str(getattr(res, "status", None) or (res.get("status") if isinstance(res, dict) else ""))
