"""The two-site KVM lab (``lab/kvm``) as the demo, the tests and the benches use it.

The lab itself — two libvirt sites on this machine, each its own libvirtd in its own
network namespace — is built and started by ``lab/kvm/up.sh``, which writes
``$HAVEN_LAB_STATE/kvm/env``. This module finds it (``read_env``), starts it when asked
(``ensure_lab``: the demo; tests never start labs, they get ``LabMissing``), describes its
sites as a Haven spec (``sites_yaml``) or as drivers (``open_lab``), and boots and removes
the lab's tiny guests: a Debian kernel + busybox initramfs with qemu-ga (built by
``lab/kvm/build-guest.sh``), each with a data disk made from the lab's empty ext4 template,
mounted at /data in the guest.

Contracts:
- readiness is the guest agent answering, never a timer;
- every path comes from the lab's state directory; nothing here is a product default.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from haven.domain.errors import ExternalError
from haven.domain.inventory import BootSpec, DiskSpec, NicSpec, ServerSpec
from haven.sites.base import AgentGate, SiteDriver, VolumeWriter

if TYPE_CHECKING:  # libvirt-python is an optional extra: imported only when drivers are made
    from haven.sites.libvirt import LibvirtDriver, LibvirtSiteConfig

DATA_SIZE = 64 * 1024 * 1024  # the guest's data disk (the template's size)
CHUNK = 1024 * 1024
BOOT_TIMEOUT_S = 180.0  # generous: TCG boot is 3-12 s, more with several guests booting
GUEST_CMDLINE = "console=ttyS0 quiet panic=-1"
NOAGENT = "haven.noagent"  # kernel argument: the guest boots without qemu-ga
NOBUTTON = "haven.nobutton"  # kernel argument: the guest ignores the ACPI power button
LINK_ADDRESSES = {"a": "10.231.0.1", "b": "10.231.0.2"}  # lab/kvm/up.sh


class LabError(ExternalError):
    """The lab could not be started or used (exit 5 through the CLI)."""


class LabMissing(LabError):
    """The lab is not running (tests skip, or fail in CI, with this reason)."""


def repo_root() -> Path:
    """The source checkout: the lab scripts live there, not in the installed package."""
    return Path(__file__).resolve().parents[2]


def scripts_dir() -> Path:
    return repo_root() / "lab" / "kvm"


def state_dir() -> Path:
    return Path(os.environ.get("HAVEN_LAB_STATE", "/var/lib/haven-lab")) / "kvm"


@dataclass(frozen=True, slots=True)
class LabSite:
    """One of the two lab sites: ``key`` "a" or "b", named ``site-<key>`` in specs."""

    key: str
    uri: str
    dir: Path  # $STATE/sites/<key>: the site daemon's config, sockets, images, logs

    @property
    def name(self) -> str:
        return f"site-{self.key}"

    @property
    def netns(self) -> str:
        return f"haven-{self.key}"

    @property
    def address(self) -> str:
        """The site's end of the inter-site veth link (inside its namespace only)."""
        return LINK_ADDRESSES[self.key]

    @property
    def veth(self) -> str:
        """The site's end of the veth link, a device in its namespace."""
        return f"haven-{self.key}0"

    @property
    def tcp_uri(self) -> str:
        """The site's libvirtd as the other site reaches it: across the veth link (usable
        from inside a lab namespace only; from the host the address is not routed)."""
        return f"qemu+tcp://{self.address}/system"

    def link_bytes(self) -> int:
        """Bytes received plus sent so far on the site's end of the veth link (the
        kernel's counters, ``ip -s link``): every byte that crossed between the sites."""
        out = subprocess.run(
            ["ip", "-n", self.netns, "-s", "-j", "link", "show", self.veth],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        stats = json.loads(out.stdout)[0]["stats64"]
        return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])

    @property
    def scratch_dir(self) -> Path:
        """Where the site's libvirtd writes the fleecing overlays of open points."""
        return self.dir / "scratch"

    @property
    def console_dir(self) -> Path:
        return self.dir / "log"

    def config(self, name: str | None = None) -> LibvirtSiteConfig:
        from haven.sites.libvirt import LibvirtSiteConfig

        return LibvirtSiteConfig(
            name=name or self.name,
            uri=self.uri,
            scratch_dir=str(self.scratch_dir),
            console_dir=str(self.console_dir),
        )


@dataclass(frozen=True, slots=True)
class LabEnv:
    a: LabSite  # the protected site in the demo and the tests
    b: LabSite  # the recovery site
    guest_dir: Path  # vmlinux, initrd.gz, data.qcow2

    def running(self) -> bool:
        return alive(self.a.uri) and alive(self.b.uri)

    def sites_yaml(self, indent: str = "  ") -> str:
        """The ``sites:`` entries of a Haven spec for the two lab sites (one per line)."""
        return "".join(
            f"{indent}- {{name: {s.name}, driver: libvirt, uri: {json.dumps(s.uri)}, "
            f"scratch_dir: {json.dumps(str(s.scratch_dir))}}}\n"
            for s in (self.a, self.b)
        )


def read_env() -> LabEnv | None:
    """The lab's URIs from HAVEN_LAB_* variables or ``$STATE/env`` (up.sh writes both)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("HAVEN_LAB_")}
    f = state_dir() / "env"
    if "HAVEN_LAB_SITE_A_URI" not in env and f.exists():
        for line in f.read_text().splitlines():
            k, _, v = line.removeprefix("export ").partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    if "HAVEN_LAB_SITE_A_URI" not in env or "HAVEN_LAB_SITE_B_URI" not in env:
        return None
    sites = state_dir() / "sites"
    guest = Path(env.get("HAVEN_LAB_GUEST_DIR", str(state_dir() / "guest")))
    return LabEnv(
        LabSite("a", env["HAVEN_LAB_SITE_A_URI"], sites / "a"),
        LabSite("b", env["HAVEN_LAB_SITE_B_URI"], sites / "b"),
        guest,
    )


def site_b_repository() -> dict[str, str] | None:
    """The S3 settings (``HAVEN_S3_*``) of the repository endpoint inside site b
    (``lab/kvm-repo/up.sh``: Swift's S3 API on 10.231.0.2, reachable across the veth link
    only), or None when it was never started."""
    root = Path(os.environ.get("HAVEN_LAB_STATE", "/var/lib/haven-lab"))
    f = root / "kvm-repo" / "swift" / "swift.env"
    if not f.exists():
        return None
    out: dict[str, str] = {}
    for line in f.read_text().splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        if k.startswith("HAVEN_S3_"):
            out[k] = shlex.split(v)[0] if v else ""
    return out if "HAVEN_S3_ENDPOINT" in out else None


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


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> None:
    """Run ``lab/kvm/<name>``; a failure raises LabError with the script's last lines."""
    script = scripts_dir() / name
    if not script.exists():
        raise LabError(f"{script} not found: run from a source checkout of Haven")
    proc = subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LabError(f"lab/kvm/{name} failed: {' / '.join(tail)}")


def ensure_lab() -> LabEnv:
    """Start the lab if needed (idempotent: up.sh leaves running sites alone)."""
    env = read_env()
    if env is None or not env.running():
        run_script("up.sh")
        env = read_env()
    if env is None:
        raise LabError("lab/kvm/up.sh ran but wrote no env file")
    return env


def require_lab() -> LabEnv:
    """The running lab, or LabMissing saying how to start it (tests never start labs)."""
    env = read_env()
    if env is None or not env.running():
        raise LabMissing("KVM lab not running: run `bash lab/kvm/up.sh` (as root)")
    if not (env.guest_dir / "vmlinux").exists():
        raise LabMissing(f"no guest in {env.guest_dir}: run lab/kvm/build-guest.sh")
    return env


@dataclass
class Lab:
    """The running lab with a driver per site (the tests' and benches' handle on it)."""

    env: LabEnv
    a: LibvirtDriver
    b: LibvirtDriver


def open_lab() -> Lab:
    try:
        from haven.sites.libvirt import LibvirtDriver
    except ImportError as exc:
        raise LabMissing(f"libvirt-python is not installed: {exc}") from exc
    from haven.sites.errors import SiteUnavailable

    env = require_lab()
    drivers = []
    for site in (env.a, env.b):
        try:
            drivers.append(LibvirtDriver(site.config()))
        except SiteUnavailable as exc:
            raise LabMissing(f"{site.name} unreachable: {exc}") from exc
    return Lab(env, drivers[0], drivers[1])


# -- guests -------------------------------------------------------------------------------------
def guest_spec(
    env: LabEnv, name: str, *, noagent: bool = False, nobutton: bool = False,
    memory_mib: int = 160,
) -> ServerSpec:  # fmt: skip
    """A lab guest. With ``noagent`` and ``nobutton`` nothing inside it answers a graceful
    stop (a hung guest: only a forced stop ends it)."""
    args = [GUEST_CMDLINE] + [a for a, on in ((NOAGENT, noagent), (NOBUTTON, nobutton)) if on]
    return ServerSpec(
        name=name,
        vcpus=1,
        memory_mib=memory_mib,
        disks=(DiskSpec("vda", DATA_SIZE),),
        nics=(NicSpec("app-net"),),
        boot=BootSpec(
            kernel=str(env.guest_dir / "vmlinux"),
            initrd=str(env.guest_dir / "initrd.gz"),
            cmdline=" ".join(args),
        ),
    )


_templates: dict[Path, bytes] = {}


def template(env: LabEnv) -> bytes:
    """The guest's empty ext4 data disk as raw bytes (built by build-guest.sh)."""
    if env.guest_dir not in _templates:
        with tempfile.NamedTemporaryFile(suffix=".raw") as tmp:
            src = str(env.guest_dir / "data.qcow2")
            subprocess.run(["qemu-img", "convert", "-O", "raw", src, tmp.name], check=True)
            _templates[env.guest_dir] = Path(tmp.name).read_bytes()
    return _templates[env.guest_dir]


def write_nonzero(writer: VolumeWriter, data: bytes) -> None:
    """Write ``data`` skipping all-zero chunks (the volume is fresh: reads as zeros)."""
    zero = bytes(CHUNK)
    for off in range(0, len(data), CHUNK):
        piece = data[off : off + CHUNK]
        if piece != zero[: len(piece)]:
            writer.write(off, piece)
    writer.flush()


@dataclass(frozen=True, slots=True)
class Guest:
    name: str
    id: str
    boot_s: float | None  # start -> first agent answer; None when booted without an agent


def boot_guests(
    driver: SiteDriver, env: LabEnv, specs: Sequence[ServerSpec],
    timeout_s: float = BOOT_TIMEOUT_S,
) -> list[Guest]:  # fmt: skip
    """Create (or reuse, by name) each guest with a data disk from the template, start all,
    then wait for every agent. A guest booted with ``noagent`` is started, not waited for."""
    existing = {s.name: s for s in driver.list_servers()}
    started: list[tuple[ServerSpec, str, float]] = []
    for spec in specs:
        if spec.name in existing:
            sid = existing[spec.name].id
        else:
            vol = driver.create_volume(f"{spec.name}-vda", DATA_SIZE)
            with driver.open_volume_writer(vol) as w:
                write_nonzero(w, template(env))
            sid = driver.define_server(
                spec, name=spec.name, network_map={"app-net": "app-net"}, volumes={"vda": vol}
            )
        if driver.get_server(sid).state.value != "running":
            driver.start_server(sid)
        started.append((spec, sid, time.monotonic()))
    out = []
    for spec, sid, t0 in started:
        if NOAGENT in (spec.boot.cmdline or ""):
            out.append(Guest(spec.name, sid, None))
            continue
        res = driver.wait_ready(sid, [AgentGate()], timeout_s)
        if not res.ready:
            raise LabError(f"guest {spec.name} did not answer: {res.detail}")
        out.append(Guest(spec.name, sid, time.monotonic() - t0))
    return out


def remove_guests(driver: SiteDriver, ids: Sequence[str]) -> None:
    """Power off, undefine and delete the volumes of these guests (best effort: teardown)."""
    for sid in ids:
        try:
            spec = driver.capture_server(sid)
            driver.destroy_server(sid)
            driver.undefine_server(sid)
        except Exception:
            continue
        sources = {d.source for d in spec.disks}
        for v in driver.list_volumes():
            if v.id in sources:
                driver.delete_volume(v)


def remove_prefixed(driver: SiteDriver, prefix: str) -> None:
    """Remove every guest and volume whose name starts with ``prefix`` (earlier runs')."""
    remove_guests(driver, [s.id for s in driver.list_servers() if s.name.startswith(prefix)])
    for v in driver.list_volumes():
        if v.name.startswith(prefix):
            driver.delete_volume(v)


def ensure_isolated_network(site: LabSite, name: str) -> None:
    """An isolated network for drills: a bridge with no uplink inside the site's network
    namespace, handed to libvirt in bridge mode (as the lab's app-net: libvirt needs
    neither iptables nor dnsmasq for it). Lab setup, because the site driver protocol does
    not create networks."""
    import libvirt

    bridge = f"br-{name}"[:15]
    ns = ["ip", "netns", "exec", site.netns]
    have = subprocess.run([*ns, "ip", "link", "show", bridge], capture_output=True, check=False)
    if have.returncode != 0:
        subprocess.run([*ns, "ip", "link", "add", bridge, "type", "bridge"], check=True)
        subprocess.run([*ns, "ip", "link", "set", bridge, "up"], check=True)
    conn = libvirt.open(site.uri)
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


def record_figure(name: str, value: object) -> None:
    """Print a measured figure (``FIGURE {...}``, for the log) and append it to
    ``$HAVEN_LAB_STATE/kvm/figures.jsonl``."""
    line = json.dumps({"figure": name, "value": value, "at": time.time()})
    print(f"FIGURE {line}")
    with contextlib.suppress(OSError), (state_dir() / "figures.jsonl").open("a") as f:
        f.write(line + "\n")
