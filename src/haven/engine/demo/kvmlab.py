"""The KVM lab as the demo and the engine's integration tests use it.

The lab itself (two libvirt sites on this machine) is built and started by
``lab/kvm/up.sh``; ``ensure_lab`` runs it when the lab's env file is missing or a site
does not answer. Guests are the lab's tiny Debian-kernel + busybox image; each gets a data
disk made from the lab's empty ext4 template, mounted at /data in the guest.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from haven.domain.errors import ExternalError
from haven.domain.inventory import BootSpec, DiskSpec, NicSpec, ServerSpec
from haven.sites.base import AgentGate, SiteDriver

DATA_SIZE = 64 * 1024 * 1024
CHUNK = 1024 * 1024


class LabError(ExternalError):
    pass


def repo_root() -> Path:
    """The source checkout (the lab scripts live there, not in the installed package)."""
    return Path(__file__).resolve().parents[4]


def state_dir() -> Path:
    return Path(os.environ.get("HAVEN_LAB_STATE", "/var/lib/haven-lab")) / "kvm"


@dataclass(frozen=True, slots=True)
class LabEnv:
    site_a_uri: str
    site_b_uri: str
    guest_dir: Path


def read_env() -> LabEnv | None:
    env = {k: v for k, v in os.environ.items() if k.startswith("HAVEN_LAB_")}
    f = state_dir() / "env"
    if "HAVEN_LAB_SITE_A_URI" not in env and f.exists():
        for line in f.read_text().splitlines():
            k, _, v = line.removeprefix("export ").partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    if "HAVEN_LAB_SITE_A_URI" not in env or "HAVEN_LAB_SITE_B_URI" not in env:
        return None
    guest = Path(env.get("HAVEN_LAB_GUEST_DIR", str(state_dir() / "guest")))
    return LabEnv(env["HAVEN_LAB_SITE_A_URI"], env["HAVEN_LAB_SITE_B_URI"], guest)


def run_script(name: str, *args: str) -> None:
    script = repo_root() / "lab" / "kvm" / name
    if not script.exists():
        raise LabError(f"{script} not found: run the demo from a source checkout")
    proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LabError(f"lab/kvm/{name} failed: {' / '.join(tail)}")


def ensure_lab() -> LabEnv:
    """Start the lab if needed (idempotent: up.sh leaves running sites alone)."""
    env = read_env()
    if env is None or not all(alive(u) for u in (env.site_a_uri, env.site_b_uri)):
        run_script("up.sh")
        env = read_env()
    if env is None:
        raise LabError("lab/kvm/up.sh ran but wrote no env file")
    return env


def alive(uri: str) -> bool:
    """The site's daemon accepts connections (a killed daemon leaves its socket file)."""
    path = uri.partition("socket=")[2]
    if not path:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def guest_spec(env: LabEnv, name: str, memory_mib: int = 160) -> ServerSpec:
    return ServerSpec(
        name=name,
        vcpus=1,
        memory_mib=memory_mib,
        disks=(DiskSpec("vda", DATA_SIZE),),
        nics=(NicSpec("app-net"),),
        boot=BootSpec(
            kernel=str(env.guest_dir / "vmlinux"),
            initrd=str(env.guest_dir / "initrd.gz"),
            cmdline="console=ttyS0 quiet panic=-1",
        ),
    )


def _template(env: LabEnv) -> bytes:
    with tempfile.NamedTemporaryFile(suffix=".raw") as tmp:
        subprocess.run(
            ["qemu-img", "convert", "-O", "raw", str(env.guest_dir / "data.qcow2"), tmp.name],
            check=True,
        )
        return Path(tmp.name).read_bytes()


def boot_guests(
    driver: SiteDriver, env: LabEnv, names: Sequence[str], timeout_s: float = 180.0
) -> dict[str, float]:
    """Create (or reuse) each guest with a fresh data disk, start all, wait for every agent.
    Returns seconds from start to agent answer per guest."""
    existing = {s.name: s for s in driver.list_servers()}
    template = _template(env)
    started: dict[str, tuple[str, float]] = {}
    for name in names:
        if name in existing:
            sid = existing[name].id
        else:
            vol = driver.create_volume(f"{name}-vda", DATA_SIZE)
            with driver.open_volume_writer(vol) as w:
                zero = bytes(CHUNK)
                for off in range(0, len(template), CHUNK):
                    piece = template[off : off + CHUNK]
                    if piece != zero[: len(piece)]:
                        w.write(off, piece)
                w.flush()
            sid = driver.define_server(
                guest_spec(env, name), name=name, network_map={"app-net": "app-net"},
                volumes={"vda": vol},
            )  # fmt: skip
        if driver.get_server(sid).state.value != "running":
            driver.start_server(sid)
        started[name] = (sid, time.monotonic())
    took: dict[str, float] = {}
    for name, (sid, t0) in started.items():
        res = driver.wait_ready(sid, [AgentGate()], timeout_s)
        if not res.ready:
            raise LabError(f"guest {name} did not answer: {res.detail}")
        took[name] = time.monotonic() - t0
    return took


def remove_guests(driver: SiteDriver, prefix: str) -> None:
    """Destroy and undefine every server and volume whose name starts with ``prefix``."""
    for s in driver.list_servers():
        if s.name.startswith(prefix):
            if s.state.value == "running":
                driver.destroy_server(s.id)
            driver.undefine_server(s.id)
    for v in driver.list_volumes():
        if v.name.startswith(prefix):
            driver.delete_volume(v)


def ensure_isolated_network(uri: str, name: str, netns: str = "haven-b") -> None:
    """An isolated network for drills: a bridge with no uplink inside the site's network
    namespace, handed to libvirt in bridge mode (as the lab's app-net: libvirt needs
    neither iptables nor dnsmasq for it). Lab setup, because the site driver protocol does
    not create networks."""
    import libvirt

    bridge = f"br-{name}"[:15]
    have = subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "show", bridge],
                          capture_output=True).returncode == 0  # fmt: skip
    if not have:
        for cmd in (["ip", "link", "add", bridge, "type", "bridge"],
                    ["ip", "link", "set", bridge, "up"]):  # fmt: skip
            subprocess.run(["ip", "netns", "exec", netns, *cmd], check=True)
    conn = libvirt.open(uri)
    try:
        try:
            net = conn.networkLookupByName(name)
            if "mode='bridge'" not in net.XMLDesc(0):
                if net.isActive():
                    net.destroy()
                net.undefine()
                raise LookupError
        except (libvirt.libvirtError, LookupError):
            net = conn.networkDefineXML(
                f"<network><name>{name}</name><forward mode='bridge'/>"
                f"<bridge name='{bridge}'/></network>"
            )
        if not net.isActive():
            net.create()
    finally:
        conn.close()
