"""Helpers shared by the KVM-lab tests (contract suite and integration tests).

The lab is started by ``lab/kvm/up.sh`` (scripts/dev.sh runs it before pytest); tests never
start it themselves. ``open_lab`` finds it through HAVEN_LAB_SITE_{A,B}_URI or, failing
that, ``$HAVEN_LAB_STATE/kvm/env`` (default /var/lib/haven-lab/kvm/env), and raises
LabMissing with a reason when it is not there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from haven.domain.inventory import BootSpec, DiskSpec, NicSpec, ServerSpec
from haven.sites.base import VolumeWriter

if TYPE_CHECKING:  # libvirt-python is an optional extra: import it only when used
    from haven.sites.libvirt import LibvirtDriver

REPO = Path(__file__).resolve().parents[3]
STATE = Path(os.environ.get("HAVEN_LAB_STATE", "/var/lib/haven-lab")) / "kvm"
DATA_SIZE = 64 * 1024 * 1024
CHUNK = 1024 * 1024
BOOT_TIMEOUT_S = 120.0  # generous: TCG boot is 3-10 s, more with several guests booting


BOOT_TO_AGENT_S: dict[str, float] = {}  # guest name -> start..first agent answer


def record_figure(name: str, value: object) -> None:
    """Append a measured figure to $HAVEN_LAB_STATE/kvm/figures.jsonl (and print it for the log)."""
    line = json.dumps({"figure": name, "value": value, "at": time.time()})
    print(f"FIGURE {line}")
    with contextlib.suppress(OSError), (STATE / "figures.jsonl").open("a") as f:
        f.write(line + "\n")


class LabMissing(Exception):
    pass


@dataclass
class Lab:
    a: LibvirtDriver  # site a: protected site in the tests
    b: LibvirtDriver  # site b: recovery site
    guest_dir: Path


def _lab_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("HAVEN_LAB_")}
    f = STATE / "env"
    if "HAVEN_LAB_SITE_A_URI" not in env and f.exists():
        for line in f.read_text().splitlines():
            k, _, v = line.removeprefix("export ").partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    return env


def open_lab() -> Lab:
    try:
        from haven.sites.libvirt import LibvirtDriver, LibvirtSiteConfig
    except ImportError as exc:
        raise LabMissing(f"libvirt-python is not installed: {exc}") from exc
    env = _lab_env()
    if "HAVEN_LAB_SITE_A_URI" not in env:
        raise LabMissing("KVM lab not running: run `bash lab/kvm/up.sh` (as root)")
    guest_dir = Path(env.get("HAVEN_LAB_GUEST_DIR", STATE / "guest"))
    if not (guest_dir / "vmlinux").exists():
        raise LabMissing(f"no guest in {guest_dir}: run lab/kvm/build-guest.sh")
    from haven.sites.errors import SiteUnavailable

    drivers = []
    for site in ("a", "b"):
        sdir = STATE / "sites" / site
        try:
            drivers.append(LibvirtDriver(LibvirtSiteConfig(
                name=site,
                uri=env[f"HAVEN_LAB_SITE_{site.upper()}_URI"],
                scratch_dir=str(sdir / "scratch"),
                console_dir=str(sdir / "log"),
            )))  # fmt: skip
        except SiteUnavailable as exc:
            raise LabMissing(f"site {site} unreachable: {exc}") from exc
    return Lab(drivers[0], drivers[1], guest_dir)


def guest_spec(lab: Lab, name: str, *, noagent: bool = False, memory_mib: int = 160) -> ServerSpec:
    cmdline = "console=ttyS0 quiet panic=-1" + (" haven.noagent" if noagent else "")
    return ServerSpec(
        name=name,
        vcpus=1,
        memory_mib=memory_mib,
        disks=(DiskSpec("vda", DATA_SIZE),),
        nics=(NicSpec("app-net"),),
        boot=BootSpec(
            kernel=str(lab.guest_dir / "vmlinux"),
            initrd=str(lab.guest_dir / "initrd.gz"),
            cmdline=cmdline,
        ),
    )


_template: bytes | None = None


def template() -> bytes:
    """The guest's empty ext4 data disk as raw bytes (built by build-guest.sh)."""
    global _template
    if _template is None:
        src = _lab_env().get("HAVEN_LAB_GUEST_DIR", str(STATE / "guest")) + "/data.qcow2"
        with tempfile.NamedTemporaryFile(suffix=".raw") as tmp:
            subprocess.run(["qemu-img", "convert", "-O", "raw", src, tmp.name], check=True)
            _template = Path(tmp.name).read_bytes()
    return _template


def write_nonzero(writer: VolumeWriter, data: bytes) -> None:
    """Write ``data`` skipping all-zero chunks (the volume is fresh: reads as zeros)."""
    zero = bytes(CHUNK)
    for off in range(0, len(data), CHUNK):
        piece = data[off : off + CHUNK]
        if piece != zero[: len(piece)]:
            writer.write(off, piece)
    writer.flush()


def boot_guests(driver: LibvirtDriver, specs: Sequence[ServerSpec]) -> list[str]:
    """Create a volume per guest from the template, define, start all, then wait for each
    guest agent (readiness is the agent answering, never a timer)."""
    from haven.sites.base import AgentGate

    ids = []
    started: dict[str, float] = {}
    for spec in specs:
        vol = driver.create_volume(f"{spec.name}-vda", DATA_SIZE)
        with driver.open_volume_writer(vol) as w:
            write_nonzero(w, template())
        sid = driver.define_server(
            spec, name=spec.name, network_map={"app-net": "app-net"}, volumes={"vda": vol}
        )
        started[sid] = time.monotonic()
        driver.start_server(sid)
        ids.append(sid)
    for sid, spec in zip(ids, specs, strict=True):
        if "haven.noagent" in (spec.boot.cmdline or ""):
            continue
        r = driver.wait_ready(sid, [AgentGate()], BOOT_TIMEOUT_S)
        if not r.ready:
            raise RuntimeError(f"guest {spec.name} not ready: {r.detail}")
        BOOT_TO_AGENT_S[spec.name] = time.monotonic() - started[sid]
    return ids


def remove_guests(driver: LibvirtDriver, ids: Sequence[str]) -> None:
    """Destroy, undefine and delete the volumes of guests (best effort, for teardown)."""
    for sid in ids:
        try:
            spec = driver.capture_server(sid)
            driver.destroy_server(sid)
            driver.undefine_server(sid)
        except Exception:
            continue
        for d in spec.disks:
            for v in driver.list_volumes():
                if v.id == d.source:
                    driver.delete_volume(v)


def remove_leftovers(driver: LibvirtDriver, prefix: str) -> None:
    """Remove guests and volumes named ``prefix*`` left by an interrupted earlier run."""
    ids = [s.id for s in driver.list_servers() if s.name.startswith(prefix)]
    remove_guests(driver, ids)
    for v in driver.list_volumes():
        if v.name.startswith(prefix):
            driver.delete_volume(v)
