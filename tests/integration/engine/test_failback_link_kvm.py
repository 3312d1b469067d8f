"""Failback moves only the delta across the inter-site link, and says how much it moved.

Haven runs inside site a's network namespace (``ip netns exec haven-a``), the way a control
plane at the protected site would; the repository is at site b, an S3 endpoint inside site
b's namespace on its veth address (``lab/kvm-repo/up.sh``: Swift's S3 API on 10.231.0.2), so
every byte Haven exchanges with its repository crosses the lab's veth link; site b's
libvirtd is reached across the link too (``qemu+tcp://10.231.0.2/system``).

protect x2 (each data disk holds 24 MiB of random data) -> the group's servers at site a
are powered off (a disaster for this group only: other developers' guests stay) ->
unplanned failover to b -> 4 MiB of new data written at b -> failback. The veth's byte
counters before and after the failback must show about the delta (what changed at b, plus
protocol overhead), not the volumes, and must agree with the figures the failback reports.

What crosses the link here: the failback's reverse point (read at b, sent to the
repository at b: it crosses because Haven's data mover runs at a), its replica update of
the home disks at a (fetched from the repository), the final point and its replica
update, the restore and the read-back check. The failback result names each;
``repository_bytes`` is their sum, ``bytes_between_sites`` the part whose disks are at
another site than the repository (what a data mover beside each site's disks would send
across).

Measured (2 guests, 64 MiB data disks holding 24 MiB of random data each, 4 MiB written
at b): before the change the link carried 118.5 MB during the failback (88% of the
volumes' 134 MB) while the failback reported 4.2 MB sent — fresh replica volumes built
at a beside the home disks, and the whole point read back from the repository to verify
them; after it, 8.8 MB, with 8.4 MB reported in ``repository_bytes`` (overhead 4.8%).

Guests and volumes are named ``fb-*``; the repository is a bucket of its own, emptied and
deleted at the end. Nothing in this process talks to 10.231.0.x: that address exists only
inside the lab's namespaces (from the host it would leave the machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from haven.datamover import encode_key_file, new_master_key
from haven.sites.base import SiteDriver
from haven_lab import kvm
from tests.conftest import lab_unavailable
from tests.support.cli import Ran, haven

pytestmark = [pytest.mark.kvm, pytest.mark.slow]
MiB = 1024 * 1024
SERVERS = ("fb-db", "fb-web")
BLOB_MIB = 24
DELTA_MIB = 4
# What the link may carry beyond the failback's reported repository bytes: TCP/IP and
# HTTP framing (~4% of bulk transfers at a 1500-byte MTU, plus ACKs), object metadata the
# figures do not count (pack indexes loaded, manifests, heads, locks: tens of KiB) and
# libvirt's RPC to site b (domain XML, job control: a few hundred KiB).
OVERHEAD_RATIO = 0.10
OVERHEAD_FIXED = 1 * MiB

SPEC = """\
apiVersion: haven/v1
sites:
  - {{name: site-a, driver: libvirt, uri: "{a_uri}", scratch_dir: "{a_scratch}"}}
  - {{name: site-b, driver: libvirt, uri: "{b_uri}", scratch_dir: "{b_scratch}"}}
repositories:
  - {{name: offsite, url: "s3://{bucket}/fb", site: site-b, key_file: "{home}/repo.key"}}
policies:
  - name: warm
    rpo: 1h
    interval: 30m
    retention: {{keep_last: 5}}
    consistency: application-or-crash
    warm_standby: true
groups:
  - name: fb
    source: site-a
    target: site-b
    policy: warm
    repository: offsite
    members: [{{server: fb-db}}, {{server: fb-web}}]
plans:
  - name: fb
    group: fb
    stages:
      - {{servers: [fb-db, fb-web], gates: [{{type: agent, timeout: 180s}}]}}
    mappings:
      networks: {{app-net: app-net}}
    checks:
      - {{type: command, server: fb-db, command: [test, -s, /data/marker], timeout: 60s}}
"""

# run inside site a's namespace: the bucket is reachable from there only
DROP_BUCKET = """
import sys
from haven.datamover.backends.s3 import S3Backend, S3Settings
b = S3Backend(sys.argv[1], "", S3Settings.resolve())
try:
    for info in list(b.list()):
        b.delete(info.key)
    b._request("DELETE", "delete bucket")
finally:
    b.close()
"""

PROBE = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/healthcheck", timeout=5) as r:
    print(r.read().decode())
"""


def _in_site_a(lab_env: kvm.LabEnv, s3: dict[str, str], code: str, *args: str) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", lab_env.a.netns, sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=120, env=_env(s3), check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def _env(s3: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("HAVEN_S3_")}, **s3}


@pytest.fixture
def s3_at_b(lab_env: kvm.LabEnv) -> dict[str, str]:
    settings = kvm.site_b_repository()
    if settings is None:
        lab_unavailable("no repository endpoint at site b: run lab/kvm-repo/up.sh")
        raise AssertionError("unreachable")
    try:
        answer = _in_site_a(lab_env, settings, PROBE, settings["HAVEN_S3_ENDPOINT"])
    except AssertionError as exc:
        lab_unavailable(f"the repository endpoint at site b does not answer: {exc}")
        raise
    assert answer == "OK"
    return settings


def _ok(ran: Ran, what: str) -> dict[str, str]:
    assert ran.returncode == 0, f"{what}: {ran.stdout[-3000:]}{ran.stderr[-3000:]}"
    doc: dict[str, str] = json.loads(ran.stdout)
    return doc


def _result(doc: dict[str, object]) -> dict[str, str]:
    res = doc.get("result", doc)
    assert isinstance(res, dict), doc
    return {str(k): str(v) for k, v in res.items()}


def _exec(drv: SiteDriver, server: str, cmd: str, timeout: float = 300) -> str:
    res = drv.guest_exec(drv.get_server(server).id, ["sh", "-c", cmd], timeout_s=timeout)
    assert res.exit_code == 0, (server, cmd, res.stderr)
    return res.stdout.decode(errors="replace")


def _remove(lab: kvm.Lab) -> None:
    for drv in (lab.a, lab.b):
        kvm.remove_prefixed(drv, "fb-")


def test_failback_moves_the_delta_across_the_link_and_reports_it(
    lab_env: kvm.LabEnv, s3_at_b: dict[str, str], engine_home: Path
) -> None:
    lab = kvm.open_lab()  # unix sockets: the test's own access, never across the link
    engine_home.mkdir(parents=True)
    (engine_home / "repo.key").write_text(encode_key_file(new_master_key()))
    bucket = f"haven-fb-{uuid.uuid4().hex[:10]}"
    spec = engine_home / "spec.yaml"
    a, b = lab_env.a, lab_env.b
    text = SPEC.format(a_uri=a.uri, a_scratch=a.scratch_dir, b_uri=b.tcp_uri,
                       b_scratch=b.scratch_dir, bucket=bucket, home=engine_home)  # fmt: skip
    spec.write_text(text)

    def cli(*args: str, timeout: float = 900) -> Ran:
        return haven(engine_home, *args, env=s3_at_b, netns=lab_env.a.netns, timeout=timeout)

    _remove(lab)
    try:
        _ok(cli("apply", "-f", str(spec), "--json"), "apply")
        kvm.boot_guests(lab.a, lab_env, [kvm.guest_spec(lab_env, s) for s in SERVERS])
        for s in SERVERS:
            _exec(lab.a, s, f"dd if=/dev/urandom of=/data/blob bs=1M count={BLOB_MIB} "
                            "2>/dev/null; echo one > /data/marker; sync")  # fmt: skip
        p1 = _result(_ok(cli("protect", "fb", "--json"), "protect #1"))
        _exec(lab.a, "fb-db", "echo two >> /data/marker; sync")
        p2 = _result(_ok(cli("protect", "fb", "--json"), "protect #2"))
        # a disaster for this group: its servers at site a are gone (powered off)
        for s in SERVERS:
            lab.a.destroy_server(lab.a.get_server(s).id)
        fo = _result(_ok(cli("failover", "fb", "--json"), "failover"))
        _exec(lab.b, "fb-db", f"dd if=/dev/urandom of=/data/delta bs=1M count={DELTA_MIB} "
                              "2>/dev/null; echo delta-at-b >> /data/marker; sync")  # fmt: skip
        before = lab_env.a.link_bytes()
        fb = _result(_ok(cli("failback", "fb", "--json"), "failback"))
        link = lab_env.a.link_bytes() - before
        assert "delta-at-b" in _exec(lab.a, "fb-db", "cat /data/marker")

        total = int(fb["bytes_total"])
        reported = int(fb.get("repository_bytes", 0))
        figures = {
            "link_bytes": link,
            "volumes_bytes": total,
            "data_bytes": int(p1["bytes_read"]),
            "delta_written_at_b": DELTA_MIB * MiB,
            "failback": {k: fb.get(k) for k in (
                "repository_bytes", "bytes_between_sites", "reverse_bytes_read",
                "reverse_bytes_sent", "reverse_replica_bytes_fetched", "final_bytes_sent",
                "final_replica_bytes_fetched", "bytes_fetched", "bytes_written",
                "reused_servers", "duration_s")},
            "protect_2": {k: p2.get(k) for k in ("bytes_sent", "replica_bytes_fetched",
                                                 "bytes_between_sites")},
            "failover": {k: fo.get(k) for k in ("bytes_fetched", "bytes_written",
                                                "bytes_between_sites")},
        }  # fmt: skip
        kvm.record_figure("failback_link", figures)
        # the link carried about the delta, not the volumes (nor the data on them)
        assert link < int(p1["bytes_read"]) / 4, figures
        assert link < 3 * DELTA_MIB * MiB + OVERHEAD_FIXED, figures
        # and the failback's figures account for it: every byte Haven exchanged with the
        # repository crossed the link (Haven at a, repository at b), plus overhead
        assert reported <= link <= reported * (1 + OVERHEAD_RATIO) + OVERHEAD_FIXED, figures
        # the replica updates wrote into the home servers' own disks, built nothing beside
        assert fb["reused_servers"] == str(len(SERVERS))
        assert not [v.name for v in lab.a.list_volumes() if v.name.startswith("fb-fb-")]
        assert "data not read back (the repository is at site-b" in fb["verified"]
        assert 0 < int(fb["bytes_between_sites"]) <= reported
    finally:
        _remove(lab)
        _in_site_a(lab_env, s3_at_b, DROP_BUCKET, bucket)
