"""One application's disaster recovery between the lab's regions, through the CLI only.

RegionOne: servers db, app, web (each boots from its own 1 GiB volume of known bytes) on a
tenant network behind a router to ``public``, security groups web (tcp 8080 from anywhere)
and app (tcp 8080 from web, on db and app), a keypair, a non-default flavor, fixed IPs, a
floating IP on web. The site spec says how Haven reaches each region's compute host's
libvirt (``compute_hosts``): KVM-lab guests named after the servers' Nova instance names
stand in for their domains (site a for RegionOne, site b for RegionTwo), and a network
namespace answers TCP on the addresses recovered servers hold (``standin``).

Through ``haven``: apply; protect with web's guest missing (crash-consistent, the reason
names it), then with all three (application-consistent, ordered freeze, reverse thaw); a
failover whose plan maps a flavor, a network and a keypair to names RegionTwo lacks (exit
2, all three listed, nothing created); a drill (nothing but flavors-keypairs-groups made,
servers in the bubble with their fixed IPs, checks over TCP and the guest agent) and its
cleanup (RegionTwo's counts as before); a failover killed by SIGKILL in the middle of the
project steps and resumed: network, subnet, router, security groups with their rules and
keypair re-created by name, the flavor mapped, fixed IPs kept (app's mapped by ``ips``),
the floating IP re-created on web, servers named with the plan's suffix, data bit for bit,
checks passed, every resource once, everything listed in the --json result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.conftest import lab_unavailable
from tests.integration.openstack import oslab, prefix_sweep, standin
from tests.integration.openstack.oslab import R1, R2, MiB

from haven_lab import kvm as kvmkit

pytestmark = [pytest.mark.openstack, pytest.mark.kvm, pytest.mark.slow]

PREFIX = "hpd"
GiB = 1024 * MiB
PORT = 8080
SERVERS = ("db", "app", "web")
FIXED = {"db": "10.61.0.11", "app": "10.61.0.12", "web": "10.61.0.13"}
APP_AT_R2 = "10.61.0.22"  # plan mapping ips: app's address at RegionTwo
HAVEN = str(Path(sys.executable).parent / "haven")

SPEC = """\
apiVersion: haven/v1
sites:
  - name: r1
    driver: openstack
    cloud: haven-lab
    region: RegionOne
    compute_hosts: {{r1-compute: "{uri_a}"}}
  - name: r2
    driver: openstack
    cloud: haven-lab
    region: RegionTwo
    compute_hosts: {{r2-compute: "{uri_b}"}}
policies:
  - {{name: p, rpo: 1h, retention: {{keep_last: 5}}, data_path: cinder-backup,
      consistency: application-or-crash, freeze_timeout: 10s}}
groups:
  - name: {p}
    source: r1
    target: r2
    policy: p
    members: [{{server: {p}-db}}, {{server: {p}-app}}, {{server: {p}-web}}]
plans:
  - name: {p}
    group: {p}
    stages:
      - servers: [{p}-db]
        gates: [{{type: agent, timeout: 5m}}]
      - servers: [{p}-app]
        depends_on: [{p}-db]
        gates: [{{type: tcp, port: {port}, timeout: 5m}}]
      - servers: [{p}-web]
        depends_on: [{p}-app]
        gates: [{{type: tcp, port: {port}, timeout: 5m}}]
    checks:
      - {{type: tcp, server: {p}-web, port: {port}, timeout: 2m}}
      - {{type: command, server: {p}-db, command: ["sh", "-c", "test -d /data"], timeout: 2m}}
    mappings:
      flavors: {{{p}-small: {p}-dr-small}}
      ips: [{{server: {p}-app, network: {p}-net, ip: {app_ip}}}]
      name_suffix: -dr
    test_bubble: {{network: {p}-bubble}}
  - name: {p}-bad
    group: {p}
    stages:
      - servers: [{p}-db, {p}-app, {p}-web]
    mappings:
      flavors: {{{p}-small: {p}-nope}}
      networks: {{{p}-net: {p}-nope-net}}
      keypairs: {{{p}-key: {p}-nope-key}}
"""


class App:
    def __init__(self, lab: oslab.Lab, kvm: kvmkit.Lab, p: str) -> None:
        self.lab, self.kvm, self.p = lab, kvm, p
        self.servers: dict[str, str] = {}  # short name -> id at RegionOne
        self.volumes: dict[str, str] = {}
        self.images: dict[str, oslab.Image] = {}
        self.floating_ip = ""
        self.r1_guests: dict[str, str] = {}  # short name -> KVM domain id at site a


@pytest.fixture(scope="module")
def kvm() -> kvmkit.Lab:
    try:
        return kvmkit.open_lab()
    except kvmkit.LabMissing as exc:
        lab_unavailable(str(exc))


@pytest.fixture(scope="module")
def app(kvm: kvmkit.Lab) -> Iterator[App]:
    lab = oslab.open_lab()
    c1, c2 = lab.conn(R1), lab.conn(R2)
    for c in (c1, c2):
        prefix_sweep.sweep(c, PREFIX)
    for site in (kvm.a, kvm.b):
        kvmkit.remove_prefixed(site, "instance-")  # stand-in guests of earlier runs
    a = App(lab, kvm, f"{PREFIX}{uuid.uuid4().hex[:6]}")
    try:
        _build(a, c1, c2)
        yield a
    finally:
        if not os.environ.get("HAVEN_TEST_KEEP"):
            kvmkit.remove_guests(kvm.a, list(a.r1_guests.values()))
            for c in (c1, c2):
                prefix_sweep.sweep(c, PREFIX)


def _build(a: App, c1: Any, c2: Any) -> None:
    p, net = a.p, c1.network
    n = net.create_network(name=f"{p}-net")
    sub = net.create_subnet(network_id=n.id, name=f"{p}-sub", cidr="10.61.0.0/24",
                            ip_version=4, gateway_ip="10.61.0.1")  # fmt: skip
    public = net.find_network("public")
    router = net.create_router(name=f"{p}-router", external_gateway_info={"network_id": public.id})
    net.add_interface_to_router(router, subnet_id=sub.id)
    web = net.create_security_group(name=f"{p}-web", description="web tier")
    net.create_security_group_rule(security_group_id=web.id, direction="ingress",
                                   ether_type="IPv4", protocol="tcp", port_range_min=PORT,
                                   port_range_max=PORT, remote_ip_prefix="0.0.0.0/0")  # fmt: skip
    app_sg = net.create_security_group(name=f"{p}-app", description="app and db tier")
    net.create_security_group_rule(security_group_id=app_sg.id, direction="ingress",
                                   ether_type="IPv4", protocol="tcp", port_range_min=PORT,
                                   port_range_max=PORT, remote_group_id=web.id)  # fmt: skip
    key = (Ed25519PrivateKey.generate().public_key()
           .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
           .decode())  # fmt: skip
    c1.compute.create_keypair(name=f"{p}-key", public_key=key)
    flavor = c1.compute.create_flavor(name=f"{p}-small", vcpus=1, ram=192, disk=0)
    c2.compute.create_flavor(name=f"{p}-dr-small", vcpus=1, ram=256, disk=0)  # the mapping's
    bs = c1.block_storage
    for s in SERVERS:
        v = bs.create_volume(size=1, name=f"{p}-{s}-boot")
        a.volumes[s] = v.id
    for s, vid in a.volumes.items():
        bs.wait_for_status(bs.get_volume(vid), "available", failures=["error"], wait=300)
        bs.set_volume_bootable_status(vid, True)
        a.images[s] = oslab.Image(GiB)
        for off in (0, 300 * MiB + 4096, GiB - 2 * MiB):
            data = os.urandom(MiB)
            oslab.write_volume(a.lab, R1, vid, off, data)
            a.images[s].write(off, data)
    for s in SERVERS:
        bdm = [{"uuid": a.volumes[s], "source_type": "volume", "destination_type": "volume",
                "boot_index": 0, "delete_on_termination": False}]  # fmt: skip
        srv = c1.compute.create_server(
            name=f"{p}-{s}", flavor_id=flavor.id, key_name=f"{p}-key",
            networks=[{"uuid": n.id, "fixed_ip": FIXED[s]}], block_device_mapping=bdm,
            security_groups=[{"name": f"{p}-web" if s == "web" else f"{p}-app"}],
        )  # fmt: skip
        a.servers[s] = srv.id
    for sid in a.servers.values():
        c1.compute.wait_for_server(c1.compute.get_server(sid), wait=300)
    (port,) = net.ports(device_id=a.servers["web"])
    fip = net.create_ip(floating_network_id=public.id, port_id=port.id,
                        description=f"{p}-web public address")  # fmt: skip
    a.floating_ip = fip.floating_ip_address


def _rules(c: Any, group: str) -> set[tuple[object, ...]]:
    (g,) = c.network.security_groups(name=group, project_id=c.current_project_id)
    return {(r["direction"], r["protocol"], r["port_range_min"], r["remote_ip_prefix"],
             c.network.get_security_group(r["remote_group_id"]).name
             if r["remote_group_id"] else None)
            for r in g.security_group_rules}  # fmt: skip


def _instance(c: Any, sid: str) -> str:
    return str(c.compute.get_server(sid).instance_name)


def _boot_r1_guests(a: App, names: tuple[str, ...]) -> None:
    """KVM-lab guests at site a named after the RegionOne servers' instance names."""
    c1 = a.lab.conn(R1)
    specs = [kvmkit.guest_spec(a.kvm.env, _instance(c1, a.servers[s])) for s in names]
    ids = [g.id for g in kvmkit.boot_guests(a.kvm.a, a.kvm.env, specs)]
    a.r1_guests.update(zip(names, ids, strict=True))


@pytest.fixture
def cli(app: App, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, "HAVEN_HOME": str(tmp_path / "home"), "COLUMNS": "200",
           "OS_CLIENT_CONFIG_FILE": app.lab.clouds_yaml}  # fmt: skip
    for k in ("HAVEN_CATALOG_URL", "HAVEN_ENGINE_URL", HAVEN_KILL):
        env.pop(k, None)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(p=app.p, port=PORT, app_ip=APP_AT_R2,
                                uri_a=app.kvm.env.a.uri, uri_b=app.kvm.env.b.uri))  # fmt: skip
    ok(env, "apply", "-f", str(spec))
    yield env


HAVEN_KILL = "HAVEN_FAULT_KILL_AT"


def haven(env: dict[str, str], *args: str, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    e = {**env, HAVEN_KILL: kill_at} if kill_at else env
    return subprocess.run([HAVEN, *args, "--json"], env=e, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip


def ok(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = haven(env, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_protect_drill_cleanup_failover_of_a_project(app: App, cli: dict[str, str]) -> None:
    p, c2 = app.p, app.lab.conn(R2)
    # -- protect: web's compute-host domain missing -> crash-consistent, saying why -------------
    _boot_r1_guests(app, ("db", "app"))
    first = ok(cli, "protect", p)["result"]
    web_domain = _instance(app.lab.conn(R1), app.servers["web"])
    assert first["consistency"] == "crash", first
    assert f"domain {web_domain!r} on r1-compute" in first["reason"], first["reason"]
    # -- all three reachable: application-consistent, ordered freeze, reverse thaw -------------
    _boot_r1_guests(app, ("web",))
    second = ok(cli, "protect", p)["result"]
    assert second["consistency"] == "application", second
    order = [f"freeze {p}-{s}" for s in SERVERS] + [f"thaw {p}-{s}" for s in reversed(SERVERS)]
    assert second["quiesce"] == ", ".join(order)
    print(f"\nfigures: protect {second}")

    # -- bad mappings: every missing target listed, exit 2, nothing created -------------------
    counts = prefix_sweep.counts(c2, p)
    bad = haven(cli, "failover", f"{p}-bad")
    assert bad.returncode == 2, bad.stdout + bad.stderr[-2000:]
    error = json.loads(bad.stdout)
    text = json.dumps(error)
    for path in (f"plans.{p}-bad.mappings.flavors.{p}-small",
                 f"plans.{p}-bad.mappings.networks.{p}-net",
                 f"plans.{p}-bad.mappings.keypairs.{p}-key"):  # fmt: skip
        assert path in text, text
    assert "nothing was created" in text
    assert prefix_sweep.counts(c2, p) == counts

    addresses = standin.Addresses(app.p[-6:], PORT, 200 + int(app.p[-2:], 16) % 50)
    addresses.start()
    guests = standin.Guests(c2, p, app.kvm, app.kvm.b, addresses)
    guests.start()
    try:
        _drill_and_cleanup(app, cli, counts)
        _failover_killed_and_resumed(app, cli)
        assert guests.errors == []
    finally:
        try:
            guests.stop()
        finally:
            addresses.stop()


def _drill_and_cleanup(app: App, cli: dict[str, str], counts: dict[str, int]) -> None:
    p, c2 = app.p, app.lab.conn(R2)
    drill = ok(cli, "drill", p)
    res = drill["result"]
    print(f"figures: drill {res}")
    assert res["checks_passed"] == "2" and res["checks_failed"] == "0", res
    bubble = c2.network.find_network(f"{p}-bubble")
    # no CIDR in the plan: the bubble takes the application's, so fixed IPs are kept
    assert [s.cidr for s in c2.network.subnets(network_id=bubble.id)] == ["10.61.0.0/24"]
    for s in SERVERS:
        (srv,) = c2.compute.servers(name=f"^{p}-{s}-dr-drill$")
        ports = list(c2.network.ports(device_id=srv.id))
        assert [pt.network_id for pt in ports] == [bubble.id]
        want = APP_AT_R2 if s == "app" else FIXED[s]
        assert [ip["ip_address"] for pt in ports for ip in pt.fixed_ips] == [want]
        assert srv.flavor.original_name == f"{p}-dr-small" and srv.key_name == f"{p}-key"
    during = prefix_sweep.counts(c2, p)
    # no production network, router or floating IP in a drill: only the bubble
    assert during["networks"] == counts["networks"] + 1 and during["routers"] == counts["routers"]
    assert during["floating_ips"] == counts["floating_ips"]
    assert during["security_groups"] == counts["security_groups"] + 2
    ok(cli, "cleanup", p)
    assert prefix_sweep.counts(c2, p) == counts


def _failover_killed_and_resumed(app: App, cli: dict[str, str]) -> None:
    p, c2 = app.p, app.lab.conn(R2)
    step = f"recover.infra:router/{p}-router"
    killed = haven(cli, "failover", p, kill_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr[-2000:]
    ops: list[dict[str, Any]] = ok(cli, "operations", "list")  # type: ignore[assignment]
    op_id = next(o["id"] for o in ops if o["kind"] == "failover"
                 and o["state"] in ("running", "pending"))  # fmt: skip
    done = ok(cli, "operations", "resume", op_id)
    assert done["state"] == "succeeded", done
    res = done["result"]
    print(f"figures: failover (killed at {step}, resumed) {res}")
    assert res["checks_passed"] == "2" and res["checks_failed"] == "0", res
    created = res["created"].split(", ")
    for part in (f"network/{p}-net", f"subnet/{p}-sub", f"router/{p}-router",
                 f"security_group/{p}-web", f"security_group/{p}-app", f"keypair/{p}-key",
                 f"server/{p}-db-dr", f"port/{p}-web-dr-0"):  # fmt: skip
        assert part in created, created
    assert not any(c.startswith("flavor/") for c in created)  # mapped to RegionTwo's own
    assert len(created) == len(set(created))
    # every resource once, by name
    net = c2.network
    (n,) = net.networks(name=f"{p}-net")
    (sub,) = net.subnets(name=f"{p}-sub")
    assert (sub.cidr, sub.gateway_ip, sub.network_id) == ("10.61.0.0/24", "10.61.0.1", n.id)
    (router,) = net.routers(name=f"{p}-router")
    assert router.external_gateway_info["network_id"] == net.find_network("public").id
    ifaces = list(net.ports(device_id=router.id, device_owner="network:router_interface"))
    assert [ip["subnet_id"] for pt in ifaces for ip in pt.fixed_ips] == [sub.id]
    for g in ("web", "app"):  # the rules as at RegionOne (remote groups by name)
        assert _rules(c2, f"{p}-{g}") == _rules(app.lab.conn(R1), f"{p}-{g}")
    assert ("ingress", "tcp", PORT, None, f"{p}-web") in _rules(c2, f"{p}-app")
    assert len(list(c2.compute.keypairs(name=f"{p}-key"))) == 1
    for s in SERVERS:
        (srv,) = c2.compute.servers(name=f"^{p}-{s}-dr$")
        assert srv.status == "ACTIVE" and srv.key_name == f"{p}-key"
        assert srv.flavor.original_name == f"{p}-dr-small"
        ports = list(net.ports(device_id=srv.id))
        assert [(pt.name, pt.network_id) for pt in ports] == [(f"{p}-{s}-dr-0", n.id)]
        want = APP_AT_R2 if s == "app" else FIXED[s]
        assert [ip["ip_address"] for ip in ports[0].fixed_ips] == [want]
        groups = {net.get_security_group(g).name for g in ports[0].security_group_ids}
        assert groups == {f"{p}-web" if s == "web" else f"{p}-app"}
        (att,) = c2.compute.volume_attachments(srv)
        assert oslab.volume_digest(app.lab, R2, att.volume_id) == app.images[s].digest(), s
    (web,) = c2.compute.servers(name=f"^{p}-web-dr$")
    (web_port,) = net.ports(device_id=web.id)
    fips = [f for f in net.ips(port_id=web_port.id)]
    assert len(fips) == 1 and fips[0].floating_ip_address != app.floating_ip  # RegionTwo's pool
    assert f"{fips[0].floating_ip_address} -> {p}-web-dr" in res["floating_ips"]
    assert prefix_sweep.counts(c2, p)["floating_ips"] == 1
