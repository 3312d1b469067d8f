"""Helpers for tests against the OpenStack lab (lab/openstack/up.sh).

The lab's compute driver is fake: no guest writes to volumes. Tests put known bytes into
a volume by writing its file on the region's NFS share (through qemu-io once the volume
has qcow2 snapshot layers, as a guest's writes would land in the active layer) and read
volumes back the same way (qemu-img convert of the active chain).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import openstack.config
import openstack.connection
from tests.conftest import lab_unavailable

from haven.datamover.backends.swift import KeystoneV3, SwiftBackend

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CLOUDS = REPO / "lab" / ".state" / "openstack" / "clouds.yaml"
CLOUD = "haven-lab"
R1, R2 = "RegionOne", "RegionTwo"
MiB = 1024 * 1024


@dataclass
class Lab:
    clouds_yaml: str
    shares: dict[str, str]  # region -> share directory
    backup_store: str  # the posix backup store (cinder-backup), for inspecting a test by hand

    def conn(self, region: str) -> openstack.connection.Connection:
        cfg = openstack.config.OpenStackConfig(config_files=[self.clouds_yaml])
        return openstack.connection.Connection(config=cfg.get_one(cloud=CLOUD, region_name=region))

    def auth(self) -> dict[str, str]:
        """The lab cloud's Keystone credentials (clouds.yaml ``auth``), e.g. for Swift."""
        auth: dict[str, str] = json.loads(Path(self.clouds_yaml).read_text())["clouds"][CLOUD][
            "auth"
        ]
        return auth

    def swift(self, container: str, prefix: str = "") -> SwiftBackend:
        """A Haven Swift backend on RegionTwo's Swift (Keystone v3), for ``container``."""
        a = self.auth()
        auth = KeystoneV3(
            a["auth_url"],
            a["username"],
            a["password"],
            a["project_name"],
            user_domain_name=a.get("user_domain_name", "Default"),
            project_domain_name=a.get("project_domain_name", "Default"),
            region=R2,
        )
        return SwiftBackend(container, prefix, auth)


def open_lab() -> Lab:
    path = os.environ.get("HAVEN_OS_CLOUDS") or str(
        Path(os.environ["HAVEN_LAB_STATE"]) / "openstack" / "clouds.yaml"
        if os.environ.get("HAVEN_LAB_STATE")
        else DEFAULT_CLOUDS
    )
    if not os.path.exists(path):
        lab_unavailable(f"OpenStack lab not up: {path} missing (run lab/openstack/up.sh)")
    data = json.loads(Path(path).read_text())
    meta = data["haven_lab"]
    lab = Lab(path, meta["nfs_shares"], meta["backup_store"])
    try:
        lab.conn(R1).identity.get_token()
    except Exception as exc:
        lab_unavailable(f"OpenStack lab not answering: {exc}")
    return lab


def active_file(lab: Lab, region: str, volume_id: str) -> Path:
    share = Path(lab.shares[region])
    info = share / f"volume-{volume_id}.info"
    if info.exists():
        return share / json.loads(info.read_text())["active"]
    return share / f"volume-{volume_id}"


def _fmt(path: Path) -> str:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return str(json.loads(out)["format"])


def write_volume(lab: Lab, region: str, volume_id: str, offset: int, data: bytes) -> None:
    """Write as a guest would: into the volume's active layer."""
    path = active_file(lab, region, volume_id)
    if _fmt(path) == "raw":
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(data)
            os.fsync(f.fileno())
        return
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        subprocess.run(
            [
                "qemu-io",
                "-f",
                "qcow2",
                "-c",
                f"write -q -s {tmp.name} {offset} {len(data)}",
                str(path),
            ],
            check=True,
            capture_output=True,
        )


def volume_digest(lab: Lab, region: str, volume_id: str) -> str:
    """SHA-256 of the volume's whole virtual content."""
    path = active_file(lab, region, volume_id)
    with tempfile.TemporaryDirectory() as d:
        if _fmt(path) != "raw":
            raw = Path(d) / "raw"
            subprocess.run(
                ["qemu-img", "convert", "-U", "-O", "raw", str(path), str(raw)],
                check=True,
                capture_output=True,
            )
            path = raw
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(4 * MiB):
                h.update(chunk)
        return h.hexdigest()


class Image:
    """The expected content of a volume: zeros plus the writes the test made."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.writes: dict[int, bytes] = {}

    def write(self, offset: int, data: bytes) -> None:
        self.writes[offset] = data

    def digest(self) -> str:
        buf = bytearray(self.size)
        for off, data in self.writes.items():
            buf[off : off + len(data)] = data
        return hashlib.sha256(buf).hexdigest()


def counts(conn: openstack.connection.Connection) -> dict[str, int]:
    """Resource counts of the project, for "cleanup leaves things as they were"."""
    pid = conn.current_project_id
    return {
        "servers": len(list(conn.compute.servers())),
        "volumes": len(list(conn.block_storage.volumes())),
        "networks": len(list(conn.network.networks())),
        "subnets": len(list(conn.network.subnets())),
        "routers": len(list(conn.network.routers())),
        "ports": len(list(conn.network.ports())),
        "security_groups": len(list(conn.network.security_groups(project_id=pid))),
        "keypairs": len(list(conn.compute.keypairs())),
        "flavors": len(list(conn.compute.flavors())),
        "floating_ips": len(list(conn.network.ips())),
    }


def sweep(conn: openstack.connection.Connection, prefix: str) -> None:
    """Remove what an interrupted earlier run left behind (names starting with ``prefix``;
    servers named db/app/web). Lab only."""
    cmp, net, bs = conn.compute, conn.network, conn.block_storage
    servers = [
        s
        for s in cmp.servers()
        if s.name.startswith(prefix)
        or s.name in ("db", "app", "web")
        or s.name.startswith(f"{prefix}")
    ]
    for s in servers:
        cmp.delete_server(s)
    for s in servers:
        cmp.wait_for_delete(s, wait=300)
    for b in sorted(bs.backups(), key=lambda b: b.created_at or "", reverse=True):
        if f"-{prefix}" in (b.name or "") or (b.name or "").startswith(prefix):
            if b.status not in ("available", "error"):
                continue
            try:
                bs.delete_backup(b)
                for _ in range(60):
                    if bs.find_backup(b.id) is None:
                        break
                    import time

                    time.sleep(1)
            except Exception:
                pass
    for gs in bs.group_snapshots():
        if (gs.name or "").startswith(("haven-p1-" + prefix, "haven-p2-" + prefix)):
            bs.delete_group_snapshot(gs)
    # Only snapshots of this prefix's volumes: other tests (or other people) share the lab.
    mine = {v.id for v in bs.volumes() if (v.name or "").startswith(prefix)}
    for snap in bs.snapshots():
        if snap.volume_id in mine and snap.status in ("available", "error"):
            with contextlib.suppress(Exception):
                bs.delete_snapshot(snap)
    # Cinder groups of this prefix (the engine's are haven-<protection group>): their
    # group snapshots first, then the group with its volumes
    groups = [g for g in bs.groups() if (g.name or "").startswith((prefix, f"haven-{prefix}"))]
    gids = {g.id for g in groups}
    for gs in bs.group_snapshots(details=True):
        if getattr(gs, "group_id", None) in gids:
            bs.delete_group_snapshot(gs)
            _retry(lambda gs=gs: _gone(bs.find_group_snapshot(gs.id)))
    for g in groups:
        _retry(lambda g=g: bs.delete_group(g, delete_volumes=True))
    for v in bs.volumes():
        if (v.name or "").startswith(prefix) and v.status in ("available", "error"):
            _retry(lambda v=v: bs.delete_volume(v))
    for r in net.routers():
        if r.name.startswith(prefix):
            for p in net.ports(device_id=r.id, device_owner="network:router_interface"):
                net.remove_interface_from_router(r, port_id=p.id)
            net.delete_router(r)
    for p in net.ports():
        if p.name.startswith(prefix) and not p.device_id:
            net.delete_port(p)
    for n in net.networks():
        if n.name.startswith(prefix):
            _retry(lambda n=n: net.delete_network(n))
    for g in net.security_groups(project_id=conn.current_project_id):
        if g.name.startswith(prefix):
            net.delete_security_group(g)
    for k in cmp.keypairs():
        if k.name.startswith(prefix):
            cmp.delete_keypair(k)
    for f in cmp.flavors():
        if f.name.startswith(prefix):
            cmp.delete_flavor(f)


def _gone(found: object) -> None:
    if found is not None:
        raise RuntimeError("still there")


def _retry(fn, tries: int = 30) -> None:  # type: ignore[no-untyped-def]
    import time

    for i in range(tries):
        try:
            fn()
            return
        except Exception:
            if i == tries - 1:
                raise
            time.sleep(2)
