"""The lab guest powers off when asked, and a stop that had to force it says so.

Before build-guest.sh handled it and the driver gave domains ACPI, every graceful stop
halted the guest without powering it off: the domain stayed running until the driver
destroyed it at its timeout, and reported nothing. Times are from the request to libvirt
showing the domain shut off (FIGURE lines: haven_lab.kvm.record_figure).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import libvirt
import pytest

from haven.domain.inventory import PowerState
from haven.sites.base import AgentGate, StopOutcome
from haven_lab import kvm

pytestmark = pytest.mark.kvm

STOP_TIMEOUT_S = 30.0  # the driver's force deadline in these tests
PROMPT_S = 10.0  # "well before the deadline": measured 0.3-2 s under TCG


@pytest.fixture(scope="module")
def guests(lab: kvm.Lab) -> Iterator[dict[str, str]]:
    kvm.remove_prefixed(lab.a, "pw-")
    specs = [
        kvm.guest_spec(lab.env, "pw-agent"),
        kvm.guest_spec(lab.env, "pw-button"),
        kvm.guest_spec(lab.env, "pw-hung", noagent=True, nobutton=True),
    ]
    booted = kvm.boot_guests(lab.a, lab.env, specs)
    yield {g.name: g.id for g in booted}
    kvm.remove_guests(lab.a, [g.id for g in booted])


def _until_shut_off(dom: libvirt.virDomain, t0: float) -> float:
    """Seconds from ``t0`` until libvirt shows the domain off (polling libvirt's state)."""
    while dom.isActive():
        assert time.monotonic() - t0 < STOP_TIMEOUT_S, "still running: it did not power off"
        time.sleep(0.05)
    return time.monotonic() - t0


def _restart(lab: kvm.Lab, sid: str) -> None:
    lab.a.start_server(sid)
    assert lab.a.wait_ready(sid, [AgentGate()], kvm.BOOT_TIMEOUT_S).ready


def test_graceful_stop_powers_off_well_before_the_deadline(
    lab: kvm.Lab, guests: dict[str, str]
) -> None:
    sid = guests["pw-agent"]
    # written, not synced: the guest's own shutdown must flush it (and unmount cleanly)
    lab.a.guest_exec(sid, ["sh", "-c", "echo before-the-stop > /data/stop-marker"], 20)
    t0 = time.monotonic()
    outcome = lab.a.stop_server(sid, timeout_s=STOP_TIMEOUT_S)
    took = time.monotonic() - t0
    kvm.record_figure("graceful_stop_s", round(took, 2))
    assert outcome is StopOutcome.GRACEFUL
    assert took < PROMPT_S, f"graceful stop took {took:.1f}s"
    assert lab.a.get_server(sid).state is PowerState.SHUTOFF
    assert lab.a.stop_server(sid) is StopOutcome.ALREADY_STOPPED
    _restart(lab, sid)
    got = lab.a.guest_exec(sid, ["cat", "/data/stop-marker"], 20)
    assert got.stdout.decode().strip() == "before-the-stop"


@pytest.mark.parametrize(
    ("guest", "mode"),
    [
        ("pw-button", libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN),  # virsh shutdown --mode acpi
        ("pw-agent", libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT),  # --mode agent: guest-shutdown
    ],
    ids=["acpi", "agent"],
)
def test_each_way_of_asking_powers_the_guest_off(
    lab: kvm.Lab, guests: dict[str, str], guest: str, mode: int
) -> None:
    sid = guests[guest]
    if lab.a.get_server(sid).state is not PowerState.RUNNING:
        _restart(lab, sid)
    conn = libvirt.open(lab.env.a.uri)
    try:
        dom = conn.lookupByUUIDString(sid)
        t0 = time.monotonic()
        dom.shutdownFlags(mode)
        took = _until_shut_off(dom, t0)
    finally:
        conn.close()
    kvm.record_figure(f"stop_{'acpi' if guest == 'pw-button' else 'agent'}_s", round(took, 2))
    assert took < PROMPT_S


def test_a_guest_that_ignores_the_stop_is_forced_and_reported(
    lab: kvm.Lab, guests: dict[str, str]
) -> None:
    sid = guests["pw-hung"]  # no agent, no power-button handler: nothing answers
    t0 = time.monotonic()
    outcome = lab.a.stop_server(sid, timeout_s=3.0)
    took = time.monotonic() - t0
    assert outcome is StopOutcome.FORCED
    assert took >= 3.0
    assert lab.a.get_server(sid).state is PowerState.SHUTOFF
