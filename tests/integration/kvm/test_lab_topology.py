"""The two-site lab itself: separate daemons, a link that can be cut, a site that can die.

Runs after the guest tests (file order). The disaster test kills site b and brings it back
with lab/kvm/up.sh, as an operator would after a host loss.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from haven.sites.errors import SiteUnavailable
from haven_lab import kvm

pytestmark = pytest.mark.kvm

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


def _probe_from_site_a(lab: kvm.Lab) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", lab.env.a.netns, sys.executable, "-c", PROBE],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": "src"},
        cwd=kvm.repo_root(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_sites_are_separate_daemons(lab: kvm.Lab) -> None:
    pids = {(s.dir / "libvirtd.pid").read_text().strip() for s in (lab.env.a, lab.env.b)}
    assert len(pids) == 2
    na = {n.id for n in lab.a.list_networks()}
    nb = {n.id for n in lab.b.list_networks()}
    assert na and nb and not na & nb, "each site has its own app-net"


def test_partition_cuts_the_link_between_sites(lab: kvm.Lab) -> None:
    assert _probe_from_site_a(lab) == "ok"
    kvm.run_script("partition.sh", "cut")
    try:
        assert _probe_from_site_a(lab) == "unavailable True"
    finally:
        kvm.run_script("partition.sh", "heal")
    assert _probe_from_site_a(lab) == "ok"


def test_disaster_at_site_b_and_its_return(lab: kvm.Lab) -> None:
    kvm.run_script("kill-site.sh", "b")
    with pytest.raises(SiteUnavailable) as info:
        lab.b.list_servers()
    assert info.value.retryable
    kvm.run_script("up.sh", env={**os.environ, "HAVEN_LAB_SKIP_INSTALL": "1"})
    back = kvm.open_lab()
    assert "app-net" in {n.name for n in back.b.list_networks()}
