"""Warm-standby replicas use what the standby site already holds, and every byte figure
counts what crosses between sites (engine/replicas.py, engine/traffic.py).

The lab's repository is at site-b: a transfer between site-a's disks and the repository
crosses between sites, one between site-b's disks and it does not.
"""

from __future__ import annotations

from typing import Any

import pytest

from haven.domain.operations import Operation, OperationKind, OperationState
from haven.engine import service, services
from haven.engine.apply import apply_spec
from haven.engine.workflows.failback import failback_workflow
from haven.engine.workflows.failover import failover_workflow
from haven.engine.workflows.protect import protect_workflow
from haven.sites.base import Capability
from haven.sites.fake.filebacked import FileFakeDriver
from haven.specs import load_spec
from tests.support.repodamage import pack_key, packs
from tests.unit.engine.conftest import LabFactory
from tests.unit.engine.lab import SERVERS, Lab, disk_bytes, edited_spec

MiB = 1024 * 1024
CHUNK = MiB  # the lab repository's chunk size


def _run(kind: OperationKind, wf: object, *args: object) -> Operation:
    op = service.run(kind, "shop", wf, *args)  # type: ignore[arg-type]
    assert op.state is OperationState.SUCCEEDED, (op.error, [(s.name, s.detail) for s in op.steps])
    return op


def _steps(op: Operation, prefix: str) -> dict[str, str]:
    return {s.name: s.detail for s in op.steps if s.name.startswith(prefix)}


def _n(result: dict[str, str], key: str) -> int:
    return int(result[key])


def _children(op: Operation) -> tuple[Operation, Operation]:
    cat = services.catalog()
    return cat.operation(f"{op.id}-rev"), cat.operation(f"{op.id}-final")


@pytest.fixture
def warm(lab_with: LabFactory) -> Lab:
    return lab_with(warm=True)


def _disaster_at_a(lab: Lab) -> None:
    """The group's servers at site-a are powered off (the site went down); they keep
    their disks, which hold the failover point."""
    a = lab.site("site-a")
    for s in a.list_servers():
        a.destroy_server(s.id)


def test_reverse_protection_updates_the_home_servers_own_disks(warm: Lab) -> None:
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    home_volumes = {v.name for v in warm.site("site-a").list_volumes()}
    _disaster_at_a(warm)
    _run(OperationKind.FAILOVER, failover_workflow, "shop")
    warm.site("site-b").write_disk("db", "vda", 0, b"written at the recovery site")
    fb = _run(OperationKind.FAILBACK, failback_workflow, "shop")

    rev, final = _children(fb)
    for child in (rev, final):
        updates = _steps(child, "protect.replica")
        assert len(updates) == len(SERVERS)
        for server in SERVERS:
            assert f"into {server}'s own disk vda" in updates[f"protect.replica:{server}/vda"]
    a = warm.site("site-a")
    # no replica volume was built beside the home disks
    assert {v.name for v in a.list_volumes()} == home_volumes
    assert disk_bytes(a, "db").startswith(b"written at the recovery site")
    assert fb.result["reused_servers"] == str(len(SERVERS))
    # the reverse point's replica update fetched the one changed chunk, not three disks
    res = fb.result
    assert 0 < _n(res, "reverse_replica_bytes_fetched") <= CHUNK + 4096
    # the home disks held the reverse point already: the final point and the restore
    # found (almost) nothing to fetch
    assert _n(res, "bytes_fetched") == 0
    assert "0 chunks written" in _steps(final, "protect.replica")["protect.replica:app/vda"]


def test_failback_byte_figures_count_every_transfer_and_what_crossed(warm: Lab) -> None:
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    _disaster_at_a(warm)
    _run(OperationKind.FAILOVER, failover_workflow, "shop")
    warm.site("site-b").write_disk("web", "vda", 0, b"web changed at b")
    fb = _run(OperationKind.FAILBACK, failback_workflow, "shop")
    rev, final = _children(fb)
    res = fb.result
    sent = _n(res, "reverse_bytes_sent") + _n(res, "final_bytes_sent")
    fetched = (
        _n(res, "reverse_replica_bytes_fetched")
        + _n(res, "final_replica_bytes_fetched")
        + _n(res, "bytes_fetched")
    )
    assert sent > 0 and fetched > 0
    # the home disks are at another site than the repository: the restore's read-back
    # checks manifests and packs only, it does not move the point across
    assert _n(res, "verify_bytes_fetched") == 0
    assert "data not read back (the repository is at site-b" in res["verified"]
    assert _n(res, "repository_bytes") == sent + fetched
    # the points were read at site-b and sent to the repository at site-b: not between
    # sites; everything fetched was written at site-a: between sites
    assert _n(res, "bytes_between_sites") == fetched
    # the children's own figures say the same
    assert _n(rev.result, "bytes_between_sites") == _n(rev.result, "replica_bytes_fetched")
    assert _n(rev.result, "repository_bytes") == _n(res, "reverse_bytes_sent") + _n(
        res, "reverse_replica_bytes_fetched"
    )
    assert _n(final.result, "replica_bytes_fetched") == _n(res, "final_replica_bytes_fetched")


def test_protect_and_failover_figures_by_where_the_repository_is(warm: Lab) -> None:
    p = _run(OperationKind.PROTECT, protect_workflow, "shop").result
    # data read at site-a and sent to the repository at site-b crosses; the replicas at
    # site-b were written from the repository beside them: it does not
    assert _n(p, "bytes_sent") > 0 and _n(p, "replica_bytes_fetched") > 0
    assert _n(p, "replica_bytes_written") > 0
    assert _n(p, "bytes_between_sites") == _n(p, "bytes_sent")
    assert _n(p, "repository_bytes") == _n(p, "bytes_sent") + _n(p, "replica_bytes_fetched")
    fo = _run(OperationKind.FAILOVER, failover_workflow, "shop").result
    # the replicas held the point: nothing to fetch; the read-back of the point (what the
    # restore did not fetch) stays at site-b, the repository's site
    assert _n(fo, "bytes_fetched") == 0 and _n(fo, "verify_bytes_fetched") > 0
    assert "read back from the repository: intact" in fo["verified"]
    assert _n(fo, "repository_bytes") == _n(fo, "verify_bytes_fetched")
    assert _n(fo, "bytes_between_sites") == 0


def test_a_repository_without_a_site_counts_every_transfer_as_crossing(lab: Lab) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["repositories"][0].pop("site")

    apply_spec(services.catalog(), load_spec(edited_spec(lab, edit)))
    p = _run(OperationKind.PROTECT, protect_workflow, "shop").result
    assert _n(p, "bytes_between_sites") == _n(p, "repository_bytes") == _n(p, "bytes_sent") > 0
    fo = _run(OperationKind.FAILOVER, failover_workflow, "shop").result
    assert _n(fo, "bytes_fetched") > 0
    assert _n(fo, "bytes_between_sites") == _n(fo, "repository_bytes") == _n(fo, "bytes_fetched")


def test_failback_finds_a_missing_pack_without_reading_the_point_back(warm: Lab) -> None:
    """The failback's restore into the home disks fetches the delta only; its read-back
    (packs only, the repository being at the other site) still sees a pack the restore
    never needed gone: the point is marked damaged and the failback reports it."""
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    _disaster_at_a(warm)
    _run(OperationKind.FAILOVER, failover_workflow, "shop")
    fb = _run(OperationKind.FAILBACK, failback_workflow, "shop")
    assert "point_damage" not in fb.result
    # the first point's packs hold chunks every later point shares
    repo = warm.root / "repo"
    gone = packs(repo)[0]
    gone.unlink()
    _run(OperationKind.FAILOVER, failover_workflow, "shop", True)  # planned: back to b
    _disaster_at_a(warm)
    fb = _run(OperationKind.FAILBACK, failback_workflow, "shop")
    assert pack_key(repo, gone) in fb.result["point_damage"], fb.result
    assert "pack is missing" in fb.result["point_damage"]


def test_a_running_servers_disk_is_never_written_by_a_replica_update(warm: Lab) -> None:
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    # unplanned failover while site-a's servers still run (a partition, not a loss)
    _run(OperationKind.FAILOVER, failover_workflow, "shop")
    a = warm.site("site-a")
    before = {s: disk_bytes(a, s) for s in SERVERS}
    warm.site("site-b").write_disk("db", "vda", 0, b"written at the recovery site")
    rev = _run(OperationKind.PROTECT, protect_workflow, "shop")  # reverse protection
    for server in SERVERS:
        detail = _steps(rev, "protect.replica")[f"protect.replica:{server}/vda"]
        assert "not updated" in detail and f"server {server} at site-a" in detail, detail
        assert "running" in detail
    a = warm.site("site-a")
    assert {s: disk_bytes(a, s) for s in SERVERS} == before
    assert _n(rev.result, "replica_bytes_fetched") == 0
    # failback stops them, then restores the delta into their disks itself
    fb = _run(OperationKind.FAILBACK, failback_workflow, "shop")
    assert fb.result["reused_servers"] == str(len(SERVERS))
    assert disk_bytes(warm.site("site-a"), "db").startswith(b"written at the recovery site")


def test_after_failback_the_recovered_servers_disks_are_the_replicas(warm: Lab) -> None:
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    _disaster_at_a(warm)
    _run(OperationKind.FAILOVER, failover_workflow, "shop")
    _run(OperationKind.FAILBACK, failback_workflow, "shop")
    b = warm.site("site-b")
    volumes_b = {v.name for v in b.list_volumes()}
    assert volumes_b == {f"shop-{s}-vda" for s in SERVERS}  # the recovered servers' disks
    warm.site("site-a").write_disk("app", "vda", 0, b"home again")
    p = _run(OperationKind.PROTECT, protect_workflow, "shop")
    updates = _steps(p, "protect.replica")
    assert all("into the existing replica" in d for d in updates.values()), updates
    assert {v.name for v in warm.site("site-b").list_volumes()} == volumes_b
    assert disk_bytes(warm.site("site-b"), "app").startswith(b"home again")
    # a recovered server started at site-b again: its disk is left alone
    b = warm.site("site-b")
    b.start_server(b.get_server("web").id)
    p = _run(OperationKind.PROTECT, protect_workflow, "shop")
    web = _steps(p, "protect.replica")["protect.replica:web/vda"]
    assert "not updated" in web and "server web at site-b" in web


def test_a_site_without_volume_overwrite_keeps_replicas_of_their_own(
    warm: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenStack's behaviour (no VOLUME_OVERWRITE): the reverse protection builds fresh
    replicas at the home site beside the home servers' disks, fetching their whole data,
    and failback restores onto them."""
    caps = FileFakeDriver.capabilities

    def without_overwrite(self: FileFakeDriver) -> Capability:
        return caps(self) & ~Capability.VOLUME_OVERWRITE

    monkeypatch.setattr(FileFakeDriver, "capabilities", without_overwrite)
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    _disaster_at_a(warm)
    _run(OperationKind.FAILOVER, failover_workflow, "shop")
    fb = _run(OperationKind.FAILBACK, failback_workflow, "shop")
    rev, _final = _children(fb)
    updates = _steps(rev, "protect.replica")
    assert all("into a new replica" in d for d in updates.values()), updates
    a = warm.site("site-a")
    assert {f"shop-{s}-vda" for s in SERVERS} <= {v.name for v in a.list_volumes()}
    # nothing changed at site-b, yet every disk's data came across (with the home
    # servers' disks as base, nothing would have: see the first test)
    fetched = [int(d.split(" B fetched")[0].rsplit(" ", 1)[1]) for d in updates.values()]
    assert all(n > 0 for n in fetched), updates
    assert _n(fb.result, "reverse_replica_bytes_fetched") == sum(fetched)
    assert fb.result["reused_servers"] == "0"
