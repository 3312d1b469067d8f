"""Volume members on real libvirt sites, through the CLI (separate processes): a storage
volume at rest (taken as a qcow2 internal snapshot at the point's instant) comes back
bit for bit after failover, and a guest that is not protected itself is recreated at
the recovery site around its protected data volume (seed use case 7): it boots from
the recovered volume and its file is there. Guests and volumes are named ``fld-*``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from haven.datamover import encode_key_file, new_master_key
from haven.domain.inventory import VolumeInfo
from haven.engine import connect, resolve, runtime, services
from haven.sites.base import SiteDriver
from haven_lab import kvm
from tests.support.cli import haven

pytestmark = [pytest.mark.kvm, pytest.mark.slow]
MiB = 1024 * 1024
REST_SIZE = 16 * MiB

SPEC = """\
apiVersion: haven/v1
sites:
{sites}
repositories:
  - {{name: repo, url: "{home}/repo", key_file: "{home}/repo.key"}}
policies:
  - {{name: p, rpo: 5m, interval: 1m}}
groups:
  - name: fld
    source: site-a
    target: site-b
    policy: p
    repository: repo
    members:
      - {{volume: fld-host-vda, attached_to: fld-host}}   # the guest's data disk
      - {{volume: fld-rest}}                              # attached to nothing
plans:
  - name: fld
    group: fld
    stages:
      - {{servers: [fld-host], gates: [{{type: agent, timeout: 180s}}]}}
"""


def _remove(drv: SiteDriver) -> None:
    kvm.remove_prefixed(drv, "fld-")


def _read(drv: SiteDriver, vol: VolumeInfo, size: int) -> bytes:
    buf = bytearray(size)
    with drv.open_volume_writer(vol) as r:
        assert r.readinto(0, buf) == size
    return bytes(buf)


def test_volume_members_come_back_and_a_server_is_recreated_around_one(
    lab_env: kvm.LabEnv, engine_home: Path
) -> None:
    engine_home.mkdir(parents=True)
    (engine_home / "repo.key").write_text(encode_key_file(new_master_key()))
    spec = engine_home / "spec.yaml"
    spec.write_text(SPEC.format(sites=lab_env.sites_yaml(), home=engine_home))
    assert haven(engine_home, "apply", "-f", str(spec)).returncode == 0
    a, b = resolve.driver("site-a"), resolve.driver("site-b")
    for drv in (a, b):
        _remove(drv)
    try:
        kvm.boot_guests(a, lab_env, [kvm.guest_spec(lab_env, "fld-host")])
        host = a.get_server("fld-host").id
        wrote = a.guest_exec(host, ["sh", "-c", "echo use-case-7 > /data/marker && sync"])
        assert wrote.exit_code == 0
        rest = a.create_volume("fld-rest", REST_SIZE)
        data = os.urandom(4 * MiB) + b"end of the data" + bytes(REST_SIZE - 4 * MiB - 15)
        with a.open_volume_writer(rest) as w:
            w.write(0, data)
            w.flush()
        connect.forget_all()  # the CLI processes use the sites now

        protect = haven(engine_home, "protect", "fld", "--json", timeout=600)
        assert protect.returncode == 0, protect.stdout + protect.stderr
        steps = {s["name"] for s in json.loads(protect.stdout)["steps"]}
        assert {"protect.backup:volume:fld-host-vda", "protect.backup:volume:fld-rest"} <= steps
        with a.open_volume_writer(rest) as w:  # after the point: must not come back
            w.write(0, b"changed after the point")

        failover = haven(engine_home, "failover", "fld", "--json", timeout=600)
        assert failover.returncode == 0, failover.stdout + failover.stderr
        result = json.loads(failover.stdout)["result"]
        recovered = dict(item.split("=") for item in result["volumes"].split(","))
        assert {k: v.removesuffix(".qcow2") for k, v in recovered.items()} == {
            "fld-host-vda": "fld-fld-host-vda", "fld-rest": "fld-fld-rest"}  # fmt: skip

        connect.forget_all()
        b = resolve.driver("site-b")
        restored = next(v for v in b.list_volumes() if v.name.startswith("fld-fld-rest"))
        assert _read(b, restored, REST_SIZE) == data  # bit for bit, as at the point
        recreated = b.get_server("fld-host")
        assert [d.target for d in recreated.spec.disks] == ["vda"]
        assert recreated.spec.disk("vda").source == next(
            v.id for v in b.list_volumes() if v.name.startswith("fld-fld-host-vda")
        )
        seen = b.guest_exec(recreated.id, ["cat", "/data/marker"])
        assert seen.exit_code == 0 and seen.stdout == b"use-case-7\n"
        # the point's internal snapshot of the volume at rest was released at the source
        a = resolve.driver("site-a")
        assert not any(_snapshots(v.id) for v in a.list_volumes() if v.name.startswith("fld-rest"))
    finally:
        runtime.shutdown()
        connect.forget_all()
        services.use_catalog(None)
        for name in ("site-a", "site-b"):
            _remove(resolve.driver(name))


def _snapshots(path: str) -> list[str]:
    """Internal snapshot names of the qcow2 file ``path``."""
    out = subprocess.run(["qemu-img", "snapshot", "-l", "-U", path], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return [line.split()[1] for line in out.splitlines()[2:] if line.split()]
