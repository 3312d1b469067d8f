"""How long a graceful stop of a KVM-lab guest takes (KVM lab running, as root).

    .venv/bin/python bench/guest_stop.py [--repeat 3] [--no-acpi]

Boots one lab guest at site a and, ``--repeat`` times for each way of asking, starts it,
waits for its agent, asks it to stop and times the request until libvirt shows the
domain shut off:

- ``driver``: ``LibvirtDriver.stop_server`` (agent, ACPI as libvirt's fallback; forced
  after ``--timeout`` seconds), with the StopOutcome it reports;
- ``acpi``: libvirt ``shutdown`` with the ACPI power button only (``virsh shutdown --mode
  acpi``);
- ``agent``: libvirt ``shutdown`` through the guest agent only (``guest-shutdown``).

A guest still running ``--timeout`` seconds after an ``acpi``/``agent`` request is
destroyed and reported as ``null``. ``--no-acpi`` defines the guest as domains were
defined before ACPI was given to them (libvirt then runs QEMU with ``-no-acpi``): the
"before" figures. Prints JSON and writes ``bench/results/guest_stop[-no-acpi].json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import libvirt

from haven.sites.base import AgentGate
from haven_lab import kvm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--no-acpi", action="store_true")
    args = ap.parse_args()
    lab = kvm.open_lab()
    kvm.remove_prefixed(lab.a, "bench-stop-")
    spec = kvm.guest_spec(lab.env, "bench-stop-1")
    if args.no_acpi:
        spec = dataclasses.replace(spec, boot=dataclasses.replace(spec.boot, acpi=False))
    (guest,) = kvm.boot_guests(lab.a, lab.env, [spec])
    conn = libvirt.open(lab.env.a.uri)
    dom = conn.lookupByUUIDString(guest.id)
    modes = {
        "acpi": libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN,
        "agent": libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT,
    }
    runs: dict[str, list[float | None]] = {"driver": [], "acpi": [], "agent": []}
    outcomes: list[str] = []
    boots: list[float] = []
    try:
        for _ in range(args.repeat):
            for mode in runs:
                if not dom.isActive():
                    t0 = time.monotonic()
                    lab.a.start_server(guest.id)
                    res = lab.a.wait_ready(guest.id, [AgentGate()], kvm.BOOT_TIMEOUT_S)
                    assert res.ready, res.detail
                    boots.append(round(time.monotonic() - t0, 2))
                t0 = time.monotonic()
                if mode == "driver":
                    outcomes.append(lab.a.stop_server(guest.id, timeout_s=args.timeout).value)
                    runs[mode].append(round(time.monotonic() - t0, 2))
                    continue
                dom.shutdownFlags(modes[mode])
                while dom.isActive() and time.monotonic() - t0 < args.timeout:
                    time.sleep(0.05)  # polls libvirt's state of the domain
                if dom.isActive():
                    runs[mode].append(None)  # never powered off
                    dom.destroy()
                else:
                    runs[mode].append(round(time.monotonic() - t0, 2))
    finally:
        conn.close()
        kvm.remove_guests(lab.a, [guest.id])
    result = {
        "acpi": not args.no_acpi,
        "timeout_s": args.timeout,
        "stop_s": runs,
        "driver_outcomes": outcomes,
        "median_stop_s": {
            m: statistics.median(v) if v and None not in v else None for m, v in runs.items()
        },
        "boot_to_agent_s": boots,
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / f"guest_stop{'-no-acpi' if args.no_acpi else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
