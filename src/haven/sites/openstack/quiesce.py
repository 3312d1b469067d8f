"""The quiesce ladder of OpenStack points: how consistent a point can be, and taking it.

OpenStack's API cannot freeze a guest, so Haven climbs down a ladder and records which
rung it stood on (``QuiescedPoint.rung``) and, below the top, why the rungs above failed:

1. Compute-host libvirt (``Rung.LIBVIRT_AGENT``): ``QuiesceConfig.libvirt_uris`` maps Nova
   hypervisor host names (or compute service hosts) to libvirt URIs. Each member's domain
   is its ``OS-EXT-SRV-ATTR:instance_name`` on its ``OS-EXT-SRV-ATTR:hypervisor_hostname``
   (admin-only attributes) and its guest agent must answer. Then the shared protocol
   (haven.sites.consistency.take_group_point) freezes members in order, runs the caller's
   snapshot step, and thaws in reverse in ``finally`` within the bounded window.
2. Nova image snapshot (``Rung.NOVA_IMAGE``), for a single-server group booted from
   volume and ACTIVE: ``createImage`` makes nova-api quiesce the guest through its own
   driver, snapshot every volume and thaw. Nova skips a failed or unsupported quiesce
   SILENTLY unless the instance's image metadata (copied into its system metadata at boot;
   for a boot-from-volume server, the boot volume's ``volume_image_metadata``) carries
   ``os_require_quiesce=yes``; then a quiesce failure fails createImage instead
   (nova/compute/api.py ``snapshot_volume_backed``, Zed). Nova copies that system metadata
   into the new image's properties, so the image tells Haven afterwards whether the guard
   was in force. The point is APPLICATION only when it was, and when the hypervisor is not
   one whose driver acknowledges quiesce without doing anything (``fake``). The snapshots
   Nova made become the point's snapshots (method ``nova-image``); the image, a bucket of
   properties with no data, is deleted at once.
3. Crash-consistent (``Rung.NONE``): the caller's snapshot step alone; the reason names
   each rung tried and why it was not usable.

Callers pass their snapshot step (group snapshot with per-volume fallback) as a callable
because the Nova rung replaces it and the libvirt rung must run it inside the freeze.
Errors: haven.sites errors only; libvirt URIs never appear in reasons (they may carry
credentials): hosts are named instead. libvirt-python is imported only when a URI is
configured, so OpenStack-only installs work without it.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from openstack import exceptions as osexc

from haven.domain.points import Consistency
from haven.sites import consistency
from haven.sites.base import OnQuiesceFailure, PointRequest, QuiesceAction, QuiesceStep
from haven.sites.errors import QuiesceFailed, SiteConflict, SiteError, SiteNotFound
from haven.sites.openstack.connection import wait_status
from haven.sites.openstack.snapshots import SnapshotSet, VolumeSnap

NOVA_METHOD = "nova-image"
REQUIRE_QUIESCE = "os_require_quiesce"
PRESYNC_TIMEOUT_S = 10.0
# what haven.sites.libvirt raises (libvirt_errors translates to all three)
_SITE_ERRORS = (SiteError, SiteNotFound, SiteConflict)
_TRUE = {"1", "t", "true", "on", "y", "yes"}  # oslo strutils.bool_from_string, as Nova reads it


class Rung(StrEnum):
    LIBVIRT_AGENT = "libvirt-agent"  # guest agent fsfreeze through the compute host's libvirt
    NOVA_IMAGE = "nova-image"  # Nova's createImage quiesce + volume snapshots
    NONE = "none"  # crash-consistent snapshot step, no quiesce


@dataclass(frozen=True, slots=True)
class QuiesceConfig:
    """What Haven may use to quiesce OpenStack guests.

    ``libvirt_uris``: Nova hypervisor host name (``OS-EXT-SRV-ATTR:hypervisor_hostname``)
    or compute service host (``OS-EXT-SRV-ATTR:host``) -> libvirt URI of that host, e.g.
    ``{"compute-1": "qemu+tls://compute-1/system"}``. ``domain_names``: server id -> libvirt
    domain name, overriding ``OS-EXT-SRV-ATTR:instance_name`` (for clouds that hide it, and
    labs). ``noop_quiesce_hypervisors``: hypervisor types whose Nova driver reports quiesce
    done without freezing anything.
    """

    libvirt_uris: Mapping[str, str] = field(default_factory=dict)
    domain_names: Mapping[str, str] = field(default_factory=dict)
    nova_image_snapshot: bool = True
    presync: bool = True  # ask each guest to sync before the window (makes freeze fast)
    noop_quiesce_hypervisors: frozenset[str] = frozenset({"fake"})
    nova_timeout_s: float = 600.0  # createImage's snapshots reaching "available"


@dataclass(frozen=True, slots=True)
class QuiescedPoint:
    """A point's snapshots and how consistent they are.

    ``freeze_window_s``: libvirt rung, first freeze to last thaw (as PointHandle); Nova
    rung, an upper bound: createImage call until its snapshots are available (Nova thaws
    once they leave "creating"). ``tried``: one line per rung passed over, and why.
    ``timings``: seconds spent per phase ("libvirt_prepare", "snapshot", "nova_image").
    """

    snapset: SnapshotSet
    consistency: Consistency
    reason: str | None
    rung: Rung
    freeze_window_s: float
    steps: tuple[QuiesceStep, ...]
    taken_at: float
    tried: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)


# -- the libvirt seam (real: haven.sites.libvirt; unit tests: in-memory fakes) ----------------
class Guest(Protocol):
    """One libvirt domain's guest agent. Methods raise haven.sites errors."""

    def ping(self, timeout_s: float) -> bool: ...
    def prepare(self, timeout_s: float, presync: bool) -> None: ...
    def freeze(self, timeout_s: float) -> None: ...
    def thaw(self, timeout_s: float) -> None: ...


class LibvirtHosts(Protocol):
    def guest(self, uri: str, domain: str) -> Guest: ...
    def close(self) -> None: ...


LibvirtFactory = Callable[[], LibvirtHosts]


def take_point(
    conn: Any,
    request: PointRequest,
    volume_ids: Sequence[str],
    snapshot: Callable[[], SnapshotSet],
    config: QuiesceConfig | None = None,
    libvirt: LibvirtFactory | None = None,
) -> QuiescedPoint:
    """Take the point of ``request`` as consistent as the site allows.

    ``volume_ids``: every volume the point must hold; ``snapshot()`` snapshots them all
    (crash-consistently) and is called at most once. ``libvirt`` replaces the real
    libvirt connections (tests). Raises QuiesceFailed, with nothing left frozen and no
    snapshot left behind, when the request says FAIL and no rung gives APPLICATION.
    """
    config = config or QuiesceConfig()
    tried: list[str] = []
    timings: dict[str, float] = {}
    if not any(m.quiesce for m in request.members):
        return _crash(request, snapshot, ["no member asks for quiesce"], timings)

    hosts: LibvirtHosts | None = None
    try:
        t0 = time.monotonic()
        guests, why = _libvirt_guests(conn, request, config, libvirt)
        timings["libvirt_prepare"] = time.monotonic() - t0
        if guests is not None:
            hosts = guests.hosts
            return _libvirt_point(request, guests, snapshot, timings)
        tried.append(f"compute-host libvirt: {why}")
    finally:
        if hosts is not None:
            with contextlib.suppress(Exception):
                hosts.close()

    usable, why = _nova_usable(conn, request, config)
    if usable:
        point, why = _nova_point(conn, request, volume_ids, config, tried, timings)
        if point is not None:
            return point
    tried.append(f"Nova image snapshot: {why}")
    return _crash(request, snapshot, tried, timings)


def _crash(
    request: PointRequest,
    snapshot: Callable[[], SnapshotSet],
    tried: list[str],
    timings: dict[str, float],
) -> QuiescedPoint:
    reason = "crash-consistent: " + "; ".join(tried)
    if request.on_quiesce_failure is OnQuiesceFailure.FAIL and any(
        m.quiesce for m in request.members
    ):
        raise QuiesceFailed(f"point {request.point_id}: {reason}")
    t0 = time.monotonic()
    snapset = snapshot()
    timings["snapshot"] = time.monotonic() - t0
    return QuiescedPoint(
        snapset, Consistency.CRASH, reason, Rung.NONE, 0.0, (), snapset.taken_at,
        tuple(tried), timings,
    )  # fmt: skip


# -- rung 1: compute-host libvirt ---------------------------------------------------------------
@dataclass
class _Guests:
    hosts: LibvirtHosts
    by_server: dict[str, Guest]


class _Ops:
    """consistency.QuiesceOps over the members' guests."""

    def __init__(self, guests: dict[str, Guest]) -> None:
        self._g = guests

    def freeze(self, server_id: str, timeout_s: float) -> None:
        self._g[server_id].freeze(timeout_s)

    def thaw(self, server_id: str, timeout_s: float) -> None:
        self._g[server_id].thaw(timeout_s)


def _libvirt_guests(
    conn: Any, request: PointRequest, config: QuiesceConfig, factory: LibvirtFactory | None
) -> tuple[_Guests | None, str]:
    """Every quiesced member's guest, agents answering; or None and why not."""
    if not config.libvirt_uris:
        return None, "no libvirt URI configured for any compute host"
    places: dict[str, tuple[str, str, str]] = {}  # server id -> (host name, uri, domain)
    for m in request.members:
        if not m.quiesce:
            continue
        try:
            s = conn.compute.get_server(m.server_id)
        except osexc.SDKException as exc:
            return None, f"server {m.server_id} not readable: {_short(exc)}"
        domain = config.domain_names.get(m.server_id) or getattr(s, "instance_name", None)
        if not domain:
            return None, (
                f"server {m.server_id}: OS-EXT-SRV-ATTR:instance_name not visible "
                "(admin-only; use an admin role or configure domain_names)"
            )
        names = [getattr(s, "hypervisor_hostname", None), getattr(s, "compute_host", None)]
        names = [n for n in names if n]
        if not names:
            return None, (
                f"server {m.server_id}: OS-EXT-SRV-ATTR:hypervisor_hostname/host not visible "
                "(admin-only attributes)"
            )
        host = next((n for n in names if n in config.libvirt_uris), None)
        if host is None:
            return None, f"server {m.server_id}: no libvirt URI configured for host {names[0]!r}"
        places[m.server_id] = (host, config.libvirt_uris[host], domain)
    try:
        hosts = (factory or _real_libvirt)()
    except ImportError as exc:
        return None, f"libvirt-python is not installed ({exc.name or exc})"
    guests: dict[str, Guest] = {}
    handed_over = False
    try:
        for sid, (host, uri, domain) in places.items():
            try:
                g = hosts.guest(uri, domain)
                answering = g.ping(request.freeze_timeout_s)
            except _SITE_ERRORS as exc:
                return None, f"server {sid}: domain {domain!r} on {host}: {_redact(exc, uri)}"
            if not answering:
                return None, f"server {sid}: guest agent of {domain!r} on {host} does not answer"
            guests[sid] = g
        for sid, g in guests.items():  # outside the window: agent timeouts, pre-sync
            try:
                g.prepare(request.freeze_timeout_s, config.presync)
            except _SITE_ERRORS as exc:
                host, uri, domain = places[sid]
                return None, f"server {sid}: domain {domain!r} on {host}: {_redact(exc, uri)}"
        handed_over = True
        return _Guests(hosts, guests), ""
    finally:
        if not handed_over:
            with contextlib.suppress(Exception):
                hosts.close()


def _libvirt_point(
    request: PointRequest,
    guests: _Guests,
    snapshot: Callable[[], SnapshotSet],
    timings: dict[str, float],
) -> QuiescedPoint:
    box: list[SnapshotSet] = []
    t0 = time.monotonic()
    outcome = consistency.take_group_point(
        _Ops(guests.by_server), request, lambda: box.append(snapshot())
    )
    timings["snapshot"] = time.monotonic() - t0
    reason = outcome.reason
    if reason is not None:
        reason = f"crash-consistent: compute-host libvirt: {reason}"
    return QuiescedPoint(
        box[0], outcome.consistency, reason, Rung.LIBVIRT_AGENT, outcome.freeze_window_s,
        outcome.steps, outcome.taken_at, (), timings,
    )  # fmt: skip


class _RealGuest:
    def __init__(self, dom: Any, agent: Any, libvirt_errors: Any) -> None:
        self._dom, self._agent, self._libvirt_errors = dom, agent, libvirt_errors

    def ping(self, timeout_s: float) -> bool:
        return bool(self._agent.ping(self._dom, timeout_s))

    def prepare(self, timeout_s: float, presync: bool) -> None:
        """Best-effort sync (a failure is not a quiesce failure); then the agent response
        timeout that bounds freeze and thaw (a failure here makes the guest unusable)."""
        if presync:
            with contextlib.suppress(*_SITE_ERRORS):
                self._agent.guest_exec(self._dom, ["sync"], PRESYNC_TIMEOUT_S)
        with self._libvirt_errors(f"agent timeout on {self._dom.name()}"):
            self._dom.agentSetResponseTimeout(max(1, math.ceil(timeout_s)), 0)

    # freeze/thaw raise GuestAgentError only; the timeout set by prepare bounds them
    def freeze(self, timeout_s: float) -> None:
        self._agent.freeze(self._dom, timeout_s, set_timeout=False)

    def thaw(self, timeout_s: float) -> None:
        self._agent.thaw(self._dom, timeout_s, set_timeout=False)


class _RealHosts:
    """One libvirt connection per URI, opened on first use, closed by ``close``."""

    def __init__(self) -> None:
        from haven.sites.libvirt import agent, conn  # lazy: libvirt-python is optional

        self._agent, self._conn = agent, conn
        self._open: dict[str, Any] = {}

    def guest(self, uri: str, domain: str) -> Guest:
        c = self._open.get(uri)
        if c is None:
            c = self._open[uri] = self._conn.connect(uri)
        with self._conn.libvirt_errors(f"domain {domain}"):
            dom = c.lookupByName(domain)
        return _RealGuest(dom, self._agent, self._conn.libvirt_errors)

    def close(self) -> None:
        for c in self._open.values():
            with contextlib.suppress(Exception):
                c.close()
        self._open.clear()


def _real_libvirt() -> LibvirtHosts:
    return _RealHosts()


# -- rung 2: Nova image snapshot of a single boot-from-volume server ----------------------------
def _nova_usable(conn: Any, request: PointRequest, config: QuiesceConfig) -> tuple[bool, str]:
    if not config.nova_image_snapshot:
        return False, "disabled by configuration"
    if len(request.members) != 1:
        return False, f"only for single-server groups (this group has {len(request.members)})"
    sid = request.members[0].server_id
    try:
        s = conn.compute.get_server(sid)
    except osexc.SDKException as exc:
        return False, f"server {sid} not readable: {_short(exc)}"
    if s.status != "ACTIVE":
        return False, f"server {sid} is {s.status}, Nova quiesces only ACTIVE servers"
    image = getattr(s, "image", None)
    if image and (image.get("id") if isinstance(image, Mapping) else True):
        return False, (
            f"server {sid} boots from an image: createImage would upload its root disk "
            "and snapshot no volume"
        )
    if not _boot_volume_requires_quiesce(conn, s):
        return False, (
            f"server {sid}: its boot volume's image metadata lacks {REQUIRE_QUIESCE}=yes, so "
            "Nova would skip a failed or unsupported quiesce silently (set "
            f"{REQUIRE_QUIESCE}=yes and hw_qemu_guest_agent=yes on the image it boots from)"
        )
    return True, ""


def _boot_volume_requires_quiesce(conn: Any, server: Any) -> bool:
    for att in getattr(server, "attached_volumes", None) or []:
        vid = att.get("id") if isinstance(att, Mapping) else getattr(att, "id", None)
        if not vid:
            continue
        try:
            v = conn.block_storage.get_volume(vid)
        except osexc.SDKException:
            continue
        meta = getattr(v, "volume_image_metadata", None) or {}
        if _truthy(meta.get(REQUIRE_QUIESCE)):
            return True
    return False


def _nova_point(
    conn: Any,
    request: PointRequest,
    volume_ids: Sequence[str],
    config: QuiesceConfig,
    tried: list[str],
    timings: dict[str, float],
) -> tuple[QuiescedPoint | None, str]:
    """Run createImage; (point, "") or (None, why) with every snapshot it made deleted.

    A point comes back CRASH only when the request allows it (else QuiesceFailed)."""
    sid = request.members[0].server_id
    name = f"haven-{request.point_id}"
    t0 = time.monotonic()
    taken_at = time.time()
    image_id: str | None = None
    snaps: list[VolumeSnap] = []
    handed_over = False
    try:
        try:
            image_id = str(conn.compute.create_server_image(sid, name, wait=False).id)
        except osexc.SDKException as exc:
            # With os_require_quiesce Nova refuses instead of snapshotting unquiesced.
            _delete_named_snapshots(conn, f"snapshot for {name}")
            return None, f"createImage of {sid} failed: {_short(exc)}"
        call_s = time.monotonic() - t0
        image = conn.image.get_image(image_id)
        props = _image_props(image)
        snaps, why = _nova_snapshots(conn, request.point_id, props, volume_ids, config)
        window = time.monotonic() - t0
        timings["nova_image"] = window
        if why:
            return None, why
        step = QuiesceStep(sid, QuiesceAction.NOVA_QUIESCE, True, call_s, f"image {image_id}")
        verdict = _nova_verdict(conn, sid, props, config)
        snapset = SnapshotSet(
            request.point_id, NOVA_METHOD, tuple(snaps), None, None,
            "volumes snapshotted one by one by Nova's createImage", taken_at,
            time.monotonic() - t0,
        )  # fmt: skip
        if verdict is None:
            handed_over = True
            return QuiescedPoint(
                snapset, Consistency.APPLICATION, None, Rung.NOVA_IMAGE, window, (step,),
                taken_at, tuple(tried), timings,
            ), ""  # fmt: skip
        reason = "crash-consistent: " + "; ".join([*tried, f"Nova image snapshot: {verdict}"])
        if request.on_quiesce_failure is OnQuiesceFailure.FAIL:
            raise QuiesceFailed(f"point {request.point_id}: {reason}")
        point = QuiescedPoint(
            snapset, Consistency.CRASH, reason, Rung.NOVA_IMAGE, window, (step,), taken_at,
            (*tried, f"Nova image snapshot: {verdict}"), timings,
        )  # fmt: skip
        handed_over = True
        return point, ""
    finally:
        if snaps and not handed_over:  # a failure or QuiesceFailed
            _delete_snapshots(conn, [s.snapshot_id for s in snaps])
        if image_id is not None:
            with contextlib.suppress(osexc.SDKException):
                conn.image.delete_image(image_id, ignore_missing=True)


def _nova_snapshots(
    conn: Any,
    point_id: str,
    props: Mapping[str, Any],
    volume_ids: Sequence[str],
    config: QuiesceConfig,
) -> tuple[list[VolumeSnap], str]:
    """The wanted volumes' snapshots from the image's block_device_mapping, available and
    renamed after the point; snapshots of other volumes are deleted."""
    bs = conn.block_storage
    raw = props.get("block_device_mapping") or []
    bdms = json.loads(raw) if isinstance(raw, str) else list(raw)
    snap_ids = [b["snapshot_id"] for b in bdms if b.get("snapshot_id")]
    mine: list[VolumeSnap] = []
    extra: list[str] = []
    try:
        for snap_id in snap_ids:
            snap = wait_status(
                f"snapshot {snap_id}",
                _getter(bs.get_snapshot, snap_id),
                {"available"},
                timeout=config.nova_timeout_s,
            )
            if snap.volume_id not in volume_ids:
                extra.append(snap_id)
                continue
            v = bs.get_volume(snap.volume_id)
            vname = v.name or v.id
            bs.update_snapshot(snap_id, name=f"haven-{point_id}-{vname}")
            mine.append(VolumeSnap(v.id, vname, snap_id, v.size))
    except (SiteError, osexc.SDKException) as exc:
        _delete_snapshots(conn, [*[s.snapshot_id for s in mine], *snap_ids])
        return [], f"Nova's snapshots did not become available: {_short(exc)}"
    _delete_snapshots(conn, extra)
    missing = [v for v in volume_ids if v not in {s.volume_id for s in mine}]
    if missing:
        _delete_snapshots(conn, [s.snapshot_id for s in mine])
        return [], f"createImage snapshotted no volume {', '.join(missing)}"
    order = {v: i for i, v in enumerate(volume_ids)}
    mine.sort(key=lambda s: order[s.volume_id])
    return mine, ""


def _nova_verdict(
    conn: Any, server_id: str, props: Mapping[str, Any], config: QuiesceConfig
) -> str | None:
    """None when Nova is known to have quiesced; else why it is not known."""
    if not _truthy(props.get(REQUIRE_QUIESCE)):
        return (
            f"the server's image metadata lacks {REQUIRE_QUIESCE}=yes, so Nova may have "
            "skipped the quiesce silently"
        )
    htype = _hypervisor_type(conn, server_id)
    if htype is not None and htype.lower() in {t.lower() for t in config.noop_quiesce_hypervisors}:
        return (
            f"Nova reported the quiesce done, but hypervisor type {htype!r} acknowledges "
            "quiesce without freezing the guest"
        )
    return None


def _hypervisor_type(conn: Any, server_id: str) -> str | None:
    """The server's hypervisor type; None when not visible (admin-only)."""
    try:
        s = conn.compute.get_server(server_id)
        name = getattr(s, "hypervisor_hostname", None)
        if not name:
            return None
        for h in conn.compute.hypervisors(details=True):
            if h.name == name:
                return str(h.hypervisor_type) if h.hypervisor_type else None
    except osexc.SDKException:
        return None
    return None


def _image_props(image: Any) -> dict[str, Any]:
    """Top-level and free-form image properties in one dict (openstacksdk splits them)."""
    props: dict[str, Any] = dict(getattr(image, "properties", None) or {})
    value = getattr(image, REQUIRE_QUIESCE, None)
    if value is not None:
        props.setdefault(REQUIRE_QUIESCE, value)
    return props


def _delete_snapshots(conn: Any, snapshot_ids: Sequence[str]) -> None:
    for sid in dict.fromkeys(snapshot_ids):
        with contextlib.suppress(osexc.SDKException, SiteError):
            snap = wait_status(
                f"snapshot {sid}",
                _getter(conn.block_storage.get_snapshot, sid),
                {"available", "error"},
                timeout=120,
            )
            conn.block_storage.delete_snapshot(snap.id, ignore_missing=True)


def _delete_named_snapshots(conn: Any, name: str) -> None:
    """A createImage that failed half-way may have left snapshots behind."""
    with contextlib.suppress(osexc.SDKException):
        ids = [s.id for s in conn.block_storage.snapshots(name=name)]
        _delete_snapshots(conn, ids)


def _getter(get: Callable[[str], Any], ident: str) -> Callable[[], Any]:
    return lambda: get(ident)


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE if value is not None else False


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _redact(exc: BaseException, uri: str) -> str:
    return _short(exc).replace(uri, "<uri>")
