"""The ordered freeze protocol (haven.sites.consistency), through the in-memory driver."""

from __future__ import annotations

import pytest

from haven.domain.inventory import Consistency, DiskSpec, ServerSpec
from haven.sites.base import OnQuiesceFailure, PointRequest, QuiesceMember
from haven.sites.consistency import take_group_point
from haven.sites.errors import GuestAgentError, QuiesceFailed
from haven.sites.fake import FakeDriver


def _group(n: int = 3) -> tuple[FakeDriver, list[str]]:
    fake = FakeDriver()
    ids = [
        fake.add_server(ServerSpec(f"vm{i}", 1, 64, (DiskSpec("vda", 1 << 20),))) for i in range(n)
    ]
    return fake, ids


def _req(ids: list[str], **kw: object) -> PointRequest:
    return PointRequest("p1", tuple(QuiesceMember(i) for i in ids), **kw)  # type: ignore[arg-type]


def test_freezes_in_order_and_thaws_in_reverse() -> None:
    fake, ids = _group()
    point = fake.create_point(_req(ids))
    assert point.consistency is Consistency.APPLICATION and point.reason is None
    assert fake.freeze_log == [("freeze", i) for i in ids] + [("thaw", i) for i in reversed(ids)]
    assert not fake.frozen
    assert point.freeze_window_s >= 0 and len(point.disks) == 3


def test_unanswering_agent_thaws_frozen_members_before_anything_else() -> None:
    fake, (a, b, c) = _group()
    fake.set_agent(b, responsive=False)
    point = fake.create_point(_req([a, b, c]))
    assert point.consistency is Consistency.CRASH
    assert point.reason is not None and b in point.reason
    assert fake.freeze_log == [("freeze", a), ("thaw", a)]  # c never frozen
    assert not fake.frozen
    assert len(point.disks) == 3  # the point exists, crash-consistent


def test_fail_policy_takes_no_point() -> None:
    fake, (a, b, c) = _group()
    fake.set_agent(c, responsive=False)
    with pytest.raises(QuiesceFailed):
        fake.create_point(_req([a, b, c], on_quiesce_failure=OnQuiesceFailure.FAIL))
    assert not fake.frozen
    assert fake.freeze_log[-2:] == [("thaw", b), ("thaw", a)]


def test_overrunning_freeze_is_crash_consistent() -> None:
    fake, (a, b) = _group(2)
    fake.set_agent(a, freeze_delay_s=0.05)
    point = fake.create_point(_req([a, b], freeze_timeout_s=0.01))
    assert point.consistency is Consistency.CRASH
    assert point.reason is not None and "took" in point.reason
    assert fake.freeze_log == [("freeze", a), ("thaw", a)]


def test_members_without_quiesce_are_not_frozen() -> None:
    fake, (a, b) = _group(2)
    req = PointRequest("p1", (QuiesceMember(a), QuiesceMember(b, quiesce=False)))
    point = fake.create_point(req)
    assert fake.freeze_log == [("freeze", a), ("thaw", a)]
    assert point.consistency is Consistency.APPLICATION
    none = fake.create_point(PointRequest("p2", (QuiesceMember(a, quiesce=False),)))
    assert none.consistency is Consistency.CRASH and none.freeze_window_s == 0


class _Ops:
    def __init__(self, failing_thaws: int = 0) -> None:
        self.log: list[tuple[str, str]] = []
        self.failing_thaws = failing_thaws

    def freeze(self, server_id: str, timeout_s: float) -> None:
        self.log.append(("freeze", server_id))

    def thaw(self, server_id: str, timeout_s: float) -> None:
        self.log.append(("thaw", server_id))
        if self.failing_thaws:
            self.failing_thaws -= 1
            raise GuestAgentError("busy")


def test_snapshot_failure_still_thaws_everything() -> None:
    ops = _Ops()

    def boom() -> None:
        raise RuntimeError("backup-begin failed")

    with pytest.raises(RuntimeError):
        take_group_point(ops, _req(["a", "b"]), boom)
    assert ops.log == [("freeze", "a"), ("freeze", "b"), ("thaw", "b"), ("thaw", "a")]


def test_failed_thaw_is_retried() -> None:
    ops = _Ops(failing_thaws=2)
    out = take_group_point(ops, _req(["a"]), lambda: None)
    assert ops.log == [("freeze", "a")] + [("thaw", "a")] * 3
    assert [s.ok for s in out.steps] == [True, False, False, True]


def test_incremental_reports_only_written_blocks() -> None:
    fake, (a,) = _group(1)
    p1 = fake.create_point(PointRequest("p1", (QuiesceMember(a),)))
    fake.release_point(p1)
    fake.write_disk(a, "vda", 200_000, b"x" * 10)
    p2 = fake.create_point(PointRequest("p2", (QuiesceMember(a),), parent_point_id="p1"))
    with fake.open_point_disk(p2, p2.disks[0]) as r:
        changed = r.changed_extents()
    assert changed is not None and [(e.offset, e.length) for e in changed] == [(196608, 65536)]
