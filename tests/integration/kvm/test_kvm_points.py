"""Real guests on the two-site lab: ordered freeze, unresponsive agent, CBT, recovery.

Three guests boot once for the module (site a). Order matters only for the last test,
which stops a guest agent for good (that guest is then removed with the others).
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import uuid
from collections.abc import Iterator

import pytest

from haven.domain.inventory import Consistency, PowerState
from haven.sites.base import (
    AgentGate,
    OnQuiesceFailure,
    PointRequest,
    QuiesceMember,
    StopOutcome,
)
from haven.sites.errors import QuiesceFailed
from haven_lab import kvm

pytestmark = pytest.mark.kvm

WRITER = (
    "touch /tmp/run; (i=0; while [ -f /tmp/run ]; do "
    "dd if=/dev/urandom of=/data/w.bin bs=4k count=8 seek=$((i%256*8)) conv=notrunc "
    "2>/dev/null; echo $i >> /data/seq; i=$((i+1)); usleep 20000; done) "
    ">/dev/null 2>&1 </dev/null &"
)
# Target: under 1 s end to end. Measured 0.30-0.70 s on an idle 2-core machine, 1.16 s at a
# load average of 7 (other TCG guests competing for the cores): the limit leaves room for
# that; set HAVEN_FREEZE_WINDOW_LIMIT_S=1.0 to hold a quiet machine to the target.
FREEZE_WINDOW_LIMIT_S = float(os.environ.get("HAVEN_FREEZE_WINDOW_LIMIT_S", "1.5"))
EXT4_RECOVER = 0x4  # s_feature_incompat bit: the journal must be replayed before mounting


@pytest.fixture(scope="module")
def guests(lab: kvm.Lab) -> Iterator[list[str]]:
    kvm.remove_prefixed(lab.a, "it-")
    kvm.remove_prefixed(lab.b, "it-")
    booted = kvm.boot_guests(
        lab.a, lab.env, [kvm.guest_spec(lab.env, f"it-g{i}") for i in (1, 2, 3)]
    )
    kvm.record_figure("boot_to_agent_s", {g.name: round(g.boot_s or 0, 2) for g in booted})
    ids = [g.id for g in booted]
    yield ids
    kvm.remove_guests(lab.a, ids)
    kvm.remove_prefixed(lab.b, "it-")


def _superblock_incompat(reader: object) -> int:
    sb = bytearray(1024)
    reader.readinto(1024, sb)
    assert sb[56:58] == b"\x53\xef", "not an ext4 superblock"
    return int(struct.unpack_from("<I", sb, 0x60)[0])


def _read_all(reader: object) -> bytearray:
    buf = bytearray(reader.size)
    assert reader.readinto(0, memoryview(buf)) == len(buf)
    return buf


def _sh(lab: kvm.Lab, sid: str, script: str, timeout: float = 30) -> bytes:
    r = lab.a.guest_exec(sid, ["sh", "-c", script], timeout)
    assert r.exit_code == 0, (script, r.stderr)
    return bytes(r.stdout)


def test_ordered_freeze_of_three_writing_guests(lab: kvm.Lab, guests: list[str]) -> None:
    for sid in guests:
        _sh(lab, sid, WRITER)
    try:
        # writers are running: each guest's seq file grows
        before = [int(_sh(lab, s, "wc -l < /data/seq").strip() or 0) for s in guests]
        req = PointRequest(f"it-o-{uuid.uuid4().hex[:6]}", tuple(QuiesceMember(s) for s in guests))
        point = lab.a.create_point(req)
        kvm.record_figure("freeze_window_3_guests_s", round(point.freeze_window_s, 3))
        kvm.record_figure(
            "quiesce_steps_ms",
            [
                (s.action, guests.index(s.server_id) + 1, round(s.duration_s * 1000))
                for s in point.steps
            ],
        )
        try:
            assert point.consistency is Consistency.APPLICATION, point.reason
            order = [(s.action, s.server_id) for s in point.steps]
            assert order == [("freeze", g) for g in guests] + [
                ("thaw", g) for g in reversed(guests)
            ]
            assert all(s.ok for s in point.steps)
            assert 0 < point.freeze_window_s < FREEZE_WINDOW_LIMIT_S, "freeze window too long"
            # application consistency, seen in the data: a frozen ext4 has a clean journal
            for disk in point.disks:
                with lab.a.open_point_disk(point, disk) as r:
                    assert not _superblock_incompat(r) & EXT4_RECOVER
        finally:
            lab.a.release_point(point)
            lab.a.delete_point(point.point_id)
        after = [int(_sh(lab, s, "wc -l < /data/seq").strip()) for s in guests]
        assert all(a > b for a, b in zip(after, before, strict=True)), "writers resumed after thaw"
    finally:
        for sid in guests:
            _sh(lab, sid, "rm -f /tmp/run; sync")


def test_incremental_reads_only_changed_extents(lab: kvm.Lab, guests: list[str]) -> None:
    sid = guests[0]
    tag = uuid.uuid4().hex[:6]
    full = lab.a.create_point(PointRequest(f"it-f-{tag}", (QuiesceMember(sid),)))
    try:
        with lab.a.open_point_disk(full, full.disks[0]) as r:
            disk = _read_all(r)
    finally:
        lab.a.release_point(full)
    _sh(lab, sid, "dd if=/dev/urandom of=/data/inc.bin bs=64k count=8 2>/dev/null; sync")
    # crash-consistent on purpose (no writer runs, all synced): a thaw rewrites the ext4
    # superblock, and we compare with the live disk afterwards
    inc = lab.a.create_point(
        PointRequest(
            f"it-i-{tag}", (QuiesceMember(sid, quiesce=False),), parent_point_id=full.point_id
        )
    )
    try:
        with lab.a.open_point_disk(inc, inc.disks[0]) as r:
            changed = r.changed_extents()
            assert changed
            for e in changed:
                buf = bytearray(e.length)
                r.readinto(e.offset, buf)
                disk[e.offset : e.end] = buf
            read, size = r.bytes_read, r.size
    finally:
        lab.a.release_point(inc)
    kvm.record_figure(
        "incremental_bytes_read", {"read": read, "volume": size, "written": 512 * 1024}
    )
    assert 512 * 1024 <= read <= size // 16, "an incremental reads only what changed"
    # the guest's own view of its disk, bit for bit
    guest_sha = _sh(lab, sid, "sha256sum /dev/vda", 60).split()[0].decode()
    assert hashlib.sha256(disk).hexdigest() == guest_sha
    for p in (inc.point_id, full.point_id):
        lab.a.delete_point(p)


def test_recovered_domain_boots_at_other_site(lab: kvm.Lab, guests: list[str]) -> None:
    sid = guests[2]
    marker = os.urandom(16).hex()
    _sh(lab, sid, f"echo {marker} > /data/marker; sync")
    point = lab.a.create_point(PointRequest(f"it-r-{uuid.uuid4().hex[:6]}", (QuiesceMember(sid),)))
    _sh(lab, sid, "echo after-the-point > /data/marker; sync")  # must not reach the copy
    spec = lab.a.capture_server(sid)
    vol = lab.b.create_volume("it-rec-vda", spec.disk("vda").size_bytes)
    try:
        with (
            lab.a.open_point_disk(point, point.disks[0]) as src,
            lab.b.open_volume_writer(vol) as dst,
        ):
            kvm.write_nonzero(dst, bytes(_read_all(src)))
    finally:
        lab.a.release_point(point)
        lab.a.delete_point(point.point_id)
    rec = lab.b.define_server(
        spec, name="it-rec", network_map={"app-net": "app-net"}, volumes={"vda": vol}
    )
    lab.b.start_server(rec)
    ready = lab.b.wait_ready(rec, [AgentGate()], kvm.BOOT_TIMEOUT_S)
    kvm.record_figure("recovered_boot_to_agent_s", round(ready.waited_s, 2))
    assert ready.ready, ready.detail
    got = lab.b.guest_exec(rec, ["cat", "/data/marker"], 20)
    assert got.stdout.decode().strip() == marker
    assert lab.b.get_server(rec).state is PowerState.RUNNING
    # the recovered domain keeps ACPI: it powers itself off when asked, nothing forced
    assert lab.b.stop_server(rec, timeout_s=20) is StopOutcome.GRACEFUL
    assert lab.b.get_server(rec).state is PowerState.SHUTOFF


def test_unresponsive_agent_thaws_the_others_at_once(lab: kvm.Lab, guests: list[str]) -> None:
    g1, g2, g3 = guests
    # stop qemu-ga inside g2 shortly after this guest-exec has returned
    _sh(lab, g2, "(sleep 0.3; kill -STOP $(cat /run/qemu-ga.pid)) >/dev/null 2>&1 </dev/null &")
    deadline = time.monotonic() + 20
    while lab.a.agent_ping(g2, timeout_s=1.0):
        assert time.monotonic() < deadline, "qemu-ga in g2 did not stop"
    for sid in (g1, g3):
        _sh(lab, sid, WRITER)
    members = tuple(QuiesceMember(s) for s in guests)
    tag = uuid.uuid4().hex[:6]
    try:
        with pytest.raises(QuiesceFailed):
            lab.a.create_point(
                PointRequest(
                    f"it-x-{tag}",
                    members,
                    freeze_timeout_s=1.0,
                    on_quiesce_failure=OnQuiesceFailure.FAIL,
                )
            )
        point = lab.a.create_point(PointRequest(f"it-u-{tag}", members, freeze_timeout_s=1.0))
        try:
            assert point.consistency is Consistency.CRASH
            assert point.reason and g2 in point.reason
            steps = [(s.action, s.server_id, s.ok) for s in point.steps]
            # g1 frozen, g2 fails, g1 thawed right away, g3 never frozen; g2 gets a last try
            assert steps[:3] == [("freeze", g1, True), ("freeze", g2, False), ("thaw", g1, True)]
            assert ("freeze", g3, True) not in steps
            kvm.record_figure("freeze_window_failed_agent_s", round(point.freeze_window_s, 3))
            assert point.freeze_window_s < 4.0
            assert len(point.disks) == 3  # the point exists, crash-consistent
            with lab.a.open_point_disk(point, point.disks[1]) as r:
                assert _superblock_incompat(r) & EXT4_RECOVER, "crash copy of a mounted fs"
        finally:
            lab.a.release_point(point)
        for sid in (g1, g3):  # never left frozen: they still write
            _sh(lab, sid, "echo alive > /data/alive; sync", timeout=10)
    finally:
        for sid in (g1, g3):
            _sh(lab, sid, "rm -f /tmp/run; sync")
