"""Stand-ins for the guests of servers the lab's fake compute "runs".

The lab's Neutron has no agents and its Nova no hypervisor: nothing answers on a server's
fixed or floating address, and no guest agent exists. To let Haven's checks reach
recovered servers for real, a test plays their guests:

- ``Addresses``: a network namespace joined to this host by a veth pair, with a TCP
  listener on ``port`` of every address in it. An address is added (configured in the
  namespace, a /32 route to it from the host) only while a server holds it, so a probe of
  the wrong address, or of a server that is gone, finds nothing listening.
- ``Guests``: a thread that watches one region for ACTIVE servers named ``prefix*``: each
  gets its addresses (ports' fixed IPs, floating IPs on them) in ``Addresses`` and a real
  KVM-lab guest named after its Nova instance name (``OS-EXT-SRV-ATTR:instance_name``) on
  the libvirt host the site's ``compute_hosts`` maps its compute host to, so the guest
  agent answers through "the compute host's libvirt". A server that goes loses both.

In a real cloud neither is needed: the guests run, Haven's host must reach the tenant
networks (or the floating IPs) for TCP checks, and ``compute_hosts`` must reach each
compute host's libvirt (qemu+tls or qemu+ssh) for agent and command checks.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import Any

from haven_lab import kvm as kvmkit

LISTENER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"haven stand-in\\n"); c.close()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Addresses:
    def __init__(self, tag: str, port: int, octet: int) -> None:
        self.ns, self.port = f"hsi-{tag}", port
        self.host_if, self.ns_if = f"hsih{tag}"[:15], f"hsin{tag}"[:15]
        self.host_ip, self.ns_ip = f"169.254.{octet}.1", f"169.254.{octet}.2"
        self.active: set[str] = set()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.ns)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        _ip("-n", self.ns, "link", "set", self.ns_if, "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")
        _ip("-n", self.ns, "route", "add", "default", "via", self.host_ip)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-c", LISTENER, str(self.port)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "listening"  # ready, not a timer

    def add(self, ip: str) -> None:
        if ip in self.active:
            return
        _ip("-n", self.ns, "addr", "add", f"{ip}/32", "dev", self.ns_if)
        _ip("route", "replace", f"{ip}/32", "via", self.ns_ip, "dev", self.host_if)
        self.active.add(ip)

    def remove(self, ip: str) -> None:
        if ip not in self.active:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("route", "del", f"{ip}/32")
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("-n", self.ns, "addr", "del", f"{ip}/32", "dev", self.ns_if)
        self.active.discard(ip)

    def stop(self) -> None:
        for ip in list(self.active):
            self.remove(ip)
        if self.proc is not None:  # the listener this object started, by its PID
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", self.ns)  # the veth pair goes with it
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self.host_if)


class Guests(threading.Thread):
    def __init__(
        self, conn: Any, prefix: str, lab: kvmkit.Lab, kvm: Any, addresses: Addresses
    ) -> None:
        """``kvm``: the KVM lab site (``lab.a`` or ``lab.b``) standing in for the region's
        compute host."""
        super().__init__(daemon=True, name=f"stand-ins {prefix}")
        self.conn, self.prefix, self.lab, self.kvm = conn, prefix, lab, kvm
        self.addresses = addresses
        self.guests: dict[str, str] = {}  # server id -> KVM domain id
        self.booted: list[str] = []  # instance names, in the order their guests started
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._sync()
            except Exception as exc:  # reported by the test, not swallowed
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._halt.wait(0.5)

    def _sync(self) -> None:
        live = {s.id: s for s in self.conn.compute.servers(details=True)
                if s.name.startswith(self.prefix) and s.status == "ACTIVE"}  # fmt: skip
        want: set[str] = set()
        for s in live.values():
            for port in self.conn.network.ports(device_id=s.id):
                want.update(ip["ip_address"] for ip in port.fixed_ips)
                want.update(f.floating_ip_address for f in self.conn.network.ips(port_id=port.id))
            if s.id not in self.guests:
                self.guests[s.id] = self._boot(s.instance_name)
        for ip in want - self.addresses.active:
            self.addresses.add(ip)
        for ip in self.addresses.active - want:
            self.addresses.remove(ip)
        gone = {sid: d for sid, d in self.guests.items()
                if self.conn.compute.find_server(sid) is None}  # fmt: skip
        for sid, dom in gone.items():
            kvmkit.remove_guests(self.kvm, [dom])
            del self.guests[sid]

    def _boot(self, name: str) -> str:
        spec = kvmkit.guest_spec(self.lab.env, name)
        vol = self.kvm.create_volume(f"{name}-vda", kvmkit.DATA_SIZE)
        with self.kvm.open_volume_writer(vol) as w:
            kvmkit.write_nonzero(w, kvmkit.template(self.lab.env))
        dom = self.kvm.define_server(spec, name=name, network_map={"app-net": "app-net"},
                                    volumes={"vda": vol})  # fmt: skip
        self.kvm.start_server(dom)
        self.booted.append(name)
        return str(dom)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        kvmkit.remove_guests(self.kvm, list(self.guests.values()))
        self.guests.clear()
