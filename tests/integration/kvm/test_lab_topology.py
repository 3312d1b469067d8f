"""The two-site lab itself: separate daemons, a link that can be cut, a site that can die.

Runs after the guest tests (file order). The disaster test kills site b and brings it back
with lab/kvm/up.sh, as an operator would after a host loss.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import lab_unavailable
from tests.integration.kvm import labkit

from haven.sites.errors import SiteUnavailable

pytestmark = pytest.mark.kvm
LAB = labkit.REPO / "lab" / "kvm"

# Runs inside site a's network namespace: reach site b's libvirtd over the veth link.
PROBE = """
import sys
from haven.sites.libvirt import LibvirtDriver, LibvirtSiteConfig
from haven.sites.errors import SiteUnavailable
try:
    d = LibvirtDriver(LibvirtSiteConfig("b", "qemu+tcp://10.231.0.2/system",
                                        scratch_dir="/tmp/haven-probe"))
    print("ok" if "app-net" in [n.name for n in d.list_networks()] else "no-net")
except SiteUnavailable as exc:
    print("unavailable", exc.retryable)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[labkit.Lab]:
    try:
        lab = labkit.open_lab()
    except labkit.LabMissing as exc:
        lab_unavailable(str(exc))
    yield lab


def _probe_from_site_a() -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", "haven-a", sys.executable, "-c", PROBE],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": "src"},
        cwd=labkit.REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_sites_are_separate_daemons(lab: labkit.Lab) -> None:
    pids = {Path(labkit.STATE / "sites" / s / "libvirtd.pid").read_text().strip() for s in "ab"}
    assert len(pids) == 2
    na = {n.id for n in lab.a.list_networks()}
    nb = {n.id for n in lab.b.list_networks()}
    assert na and nb and not na & nb, "each site has its own app-net"


def test_partition_cuts_the_link_between_sites(lab: labkit.Lab) -> None:
    assert _probe_from_site_a() == "ok"
    subprocess.run(["bash", str(LAB / "partition.sh"), "cut"], check=True)
    try:
        assert _probe_from_site_a() == "unavailable True"
    finally:
        subprocess.run(["bash", str(LAB / "partition.sh"), "heal"], check=True)
    assert _probe_from_site_a() == "ok"


def test_disaster_at_site_b_and_its_return(lab: labkit.Lab) -> None:
    subprocess.run(["bash", str(LAB / "kill-site.sh"), "b"], check=True, timeout=60)
    with pytest.raises(SiteUnavailable) as info:
        lab.b.list_servers()
    assert info.value.retryable
    env = {**os.environ, "HAVEN_LAB_SKIP_INSTALL": "1"}
    subprocess.run(["bash", str(LAB / "up.sh")], check=True, timeout=120, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    back = labkit.open_lab()
    assert "app-net" in {n.name for n in back.b.list_networks()}
