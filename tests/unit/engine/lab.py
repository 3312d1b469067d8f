"""A two-site fake lab for engine tests: file-backed fake sites, a local repository.

``make_lab(tmp)`` writes a spec (sites a/b, repository, policy, group ``shop`` with db, app,
web, plan ``shop``), creates the three servers with small data disks at site a and
returns the paths. The engine reads the spec from the catalog under ``$HAVEN_HOME``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from haven.datamover import encode_key_file, new_master_key
from haven.domain.groups import Member, MemberKind, ProtectionGroup
from haven.domain.inventory import DiskRole, DiskSpec, NicSpec, ServerSpec, VolumeInfo
from haven.domain.project import (
    FlavorDef,
    KeypairDef,
    NetworkDef,
    PortDef,
    RoleAssignment,
    RouterDef,
    RuleDef,
    SecurityGroupDef,
    ServerPlacement,
    SubnetDef,
)
from haven.domain.resources import ResourceKind, Resources
from haven.engine import services
from haven.sites.fake.filebacked import FileFakeDriver

MiB = 1024 * 1024
DISK = 2 * MiB
SERVERS = ("db", "app", "web")

SPEC = """\
apiVersion: haven/v1
sites:
  - {{name: site-a, driver: fake, uri: "file://{root}/site-a"}}
  - {{name: site-b, driver: fake, uri: "file://{root}/site-b"}}
repositories:
  - name: offsite
    url: {root}/repo
    site: site-b
    {key}
policies:
  - name: gold
    rpo: 5m
    interval: 1m
    retention: {{keep_last: {keep_last}}}
    consistency: application-or-crash
    freeze_timeout: 5s
    warm_standby: {warm}
groups:
  - name: shop
    source: site-a
    target: site-b
    policy: gold
    repository: offsite
    members:
      - server: db
        hooks:
          pre_freeze: [{{command: "true", timeout: 5s, on_error: fail}}]
          post_thaw: [{{command: "true", timeout: 5s, on_error: continue}}]
      - server: app
      - server: web
plans:
  - name: shop
    group: shop
    stages:
      - servers: [db]
        gates: [{{type: agent, timeout: 10s}}]
      - servers: [app]
        depends_on: [db]
        gates: [{{type: agent, timeout: 10s}}]
      - servers: [web]
        depends_on: [db]
        gates: [{{type: agent, timeout: 10s}}]
    mappings:
      networks: {{app-net: app-net}}{mappings}
    test_bubble: {{network: shop-drill}}
    checks:
      - {{type: command, server: web, command: ["true"]}}
{plans}"""

# the project lab (``make_lab(project=True)``): plan shop maps the flavor to site b's own,
# plan shop-bad maps a flavor, a network and a keypair to names site b does not have
PROJECT_MAPPINGS = """
      flavors: {m1.shop: m1.small}"""
BAD_PLAN = """  - name: shop-bad
    group: shop
    stages:
      - servers: [db, app, web]
    mappings:
      flavors: {m1.shop: m1.nope}
      networks: {shop-net: no-net}
      keypairs: {shop-key: no-key}
"""
FIXED_IPS = {"db": "10.20.0.11", "app": "10.20.0.12", "web": "10.20.0.13"}
FLOATING_IP = "198.51.100.7"


@dataclass(frozen=True)
class Lab:
    root: Path
    spec: Path

    def site(self, name: str) -> FileFakeDriver:
        return FileFakeDriver(name, self.root / name)


def server_spec(name: str) -> ServerSpec:
    return ServerSpec(
        name=name,
        vcpus=1,
        memory_mib=128,
        disks=(DiskSpec("vda", DISK, DiskRole.DATA, "raw"),),
        nics=(NicSpec("app-net"),),
    )


def make_lab(
    root: Path,
    *,
    keep_last: int = 3,
    warm: bool = False,
    password_env: str | None = None,
    project: bool = False,
) -> Lab:
    """``password_env``: the repository's passphrase is read from that environment
    variable; else (the default) a key file: no KDF on every process start (crash tests
    start many). ``project``: site a's servers live in a project (``seed_project``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "repo.key").write_text(encode_key_file(new_master_key()))
    key = f"password: {{env: {password_env}}}" if password_env else f"key_file: {root}/repo.key"
    spec = root / "spec.yaml"
    spec.write_text(
        SPEC.format(
            root=root, keep_last=keep_last, warm="true" if warm else "false", key=key,
            mappings=PROJECT_MAPPINGS if project else "",
            plans=BAD_PLAN if project else "",
        )
    )  # fmt: skip
    lab = Lab(root, spec)
    a = lab.site("site-a")
    lab.site("site-b")
    for name in SERVERS:
        sid = a.add_server(server_spec(name))
        a.write_disk(sid, "vda", 0, f"{name} initial data".encode())
    if project:
        seed_project(lab)
    return lab


def seed_project(lab: Lab) -> None:
    """Site a: the servers on network shop-net (fixed IPs ``FIXED_IPS``) behind router
    shop-router (gateway: the external network public), security groups shop-web (tcp 80)
    and shop-db (from shop-web), keypair shop-key, flavor m1.shop, volume type fast, web's
    floating IP, alice's member role. Site b: public, alice, member, flavor m1.small."""
    a, b = lab.site("site-a"), lab.site("site-b")
    public = NetworkDef("public", (SubnetDef("public-sub", "198.51.100.0/24"),), external=True)
    for site in (a, b):
        site.add_network(public)
        site.add_user("alice")
        site.add_role("member")
    b.add_flavor(FlavorDef("m1.small", 1, 256))
    a.add_flavor(FlavorDef("m1.shop", 1, 128, 1, extra_specs={"hw:cpu_policy": "shared"}))
    a.add_keypair(KeypairDef("shop-key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIShop shop"))
    a.add_network(NetworkDef("shop-net", (SubnetDef("shop-sub", "10.20.0.0/24", 4, "10.20.0.1"),)))
    a.add_router(RouterDef("shop-router", "public", ("shop-sub",)))
    web = SecurityGroupDef("shop-web", "web tier", (RuleDef("ingress", "IPv4", "tcp", 80, 80,
                                                            "0.0.0.0/0"),))  # fmt: skip
    a.add_security_group(web)
    a.add_security_group(SecurityGroupDef("shop-db", "db tier", (
        RuleDef("ingress", "IPv4", "tcp", 5432, 5432, None, "shop-web"),)))  # fmt: skip
    a.add_volume_type("fast")
    a.assign(RoleAssignment("alice", "member"))
    for name in SERVERS:
        groups = ("shop-web",) if name == "web" else ("shop-db",)
        port = PortDef("shop-net", (FIXED_IPS[name],), "shop-sub")
        a.place(name, ServerPlacement(name, "m1.shop", "shop-key", groups, (port,),
                                      {"vda": "fast"}))  # fmt: skip
    a.add_floating_ip("web", "public", FLOATING_IP)


def disk_bytes(drv: FileFakeDriver, server: str) -> bytes:
    """The data disk of ``server`` (by name) as it is now."""
    info = drv.get_server(server)
    src = info.spec.disk("vda").source
    assert src is not None
    return bytes(drv.volumes[src][1]) if src in drv.volumes else b""


def edited_spec(lab: Lab, edit: Callable[[dict[str, Any]], None], name: str = "edited") -> Path:
    """The lab's spec changed by ``edit`` (on its YAML data), written beside it."""
    data: dict[str, Any] = yaml.safe_load(lab.spec.read_text())
    edit(data)
    path = lab.root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def add_volume(drv: FileFakeDriver, name: str, data: bytes, size: int = DISK) -> VolumeInfo:
    """A volume at the site holding ``data`` at offset 0 (attached to nothing)."""
    vol = drv.create_volume(name, size)
    with drv.open_volume_writer(vol) as w:
        w.write(0, data)
    return vol


def add_host(drv: FileFakeDriver, name: str, volume: VolumeInfo, running: bool = True) -> str:
    """A server ``name`` (not a group member) with its own boot disk ``vda`` and
    ``volume`` attached as ``vdb``: the server of seed use case 7."""
    boot = drv.create_volume(f"{name}-boot", DISK)
    spec = ServerSpec(
        name=name,
        vcpus=1,
        memory_mib=128,
        disks=(DiskSpec("vda", DISK, DiskRole.BOOT, "raw"), DiskSpec("vdb", volume.size_bytes)),
        nics=(NicSpec("app-net"),),
    )
    sid = drv.define_server(spec, name=name, network_map={"app-net": "app-net"},
                            volumes={"vda": boot, "vdb": volume})  # fmt: skip
    if running:
        drv.start_server(sid)
    return sid


def volume_bytes(drv: FileFakeDriver, name: str, length: int) -> bytes:
    """The first ``length`` bytes of the volume ``name`` (exact name) at the site."""
    for vol in drv.list_volumes():
        if vol.name == name:
            return bytes(drv.volumes[vol.id][1][:length])
    raise AssertionError(f"no volume {name}: {[v.name for v in drv.list_volumes()]}")


# --- groups owned by a Keystone project (per-project keys, docs/keys.md) ----------------

MARKER = b"TENANT-PLAINTEXT-MARKER-"  # mark_disks writes it; no repository object may hold it


def own_group(lab: Lab, group: str, project: str | None) -> ProtectionGroup:
    """Give ``group`` to ``project`` in the engine's catalog (the spec's ``project`` field
    is the API's); a group named other than shop is a new one, of a new server
    ``<group>-vm`` at site a."""
    cat = services.catalog()
    shop = cat.get(ResourceKind.GROUP, "shop")
    assert isinstance(shop, ProtectionGroup)
    owned = replace(shop, name=group, project=project)
    if group != "shop":
        sid = lab.site("site-a").add_server(server_spec(f"{group}-vm"))
        lab.site("site-a").write_disk(sid, "vda", 0, f"{group} data".encode() + MARKER * 64)
        owned = replace(owned, members=(Member(MemberKind.SERVER, f"{group}-vm"),))
    with cat.transaction() as s:
        cat.write_resources(s, Resources(groups=(owned,)))
    return owned


def mark_disks(lab: Lab) -> None:
    """Write MARKER into the data disks of shop's servers at site a."""
    a = lab.site("site-a")
    for name in SERVERS:
        a.write_disk(name, "vda", 4096, MARKER * 64)


def repository_files(root: Path) -> dict[str, bytes]:
    """Every file under a local repository, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
