"""The catalog's usage and quota records (catalog/accounting.py, migration 0006): the
state history seeded for groups older than 0006, and quota rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from haven.catalog import accounting
from haven.catalog.accounting import QuotaLimits
from haven.catalog.db import MIGRATIONS
from haven.catalog.store import Catalog
from haven.domain.groups import GroupState

_GROUP = (
    "INSERT INTO groups (name, spec, generation, created_at, updated_at, source_site, "
    "target_site, policy, state) VALUES (:name, '{}', 1, '2026-01-01 00:00:00.000000', "
    "'2026-01-01 00:00:00.000000', 'a', 'b', 'gold', :state)"
)
_POINT = (
    "INSERT INTO recovery_points (id, group_name, state, created_at, data) "
    "VALUES (:id, :group, :state, :at, '{}')"
)


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def test_groups_older_than_0006_are_protected_from_their_first_committed_point(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        for name, state in (("shop", "suspended"), ("fresh", "protected"), ("idle", "unprotected")):
            conn.execute(text(_GROUP), {"name": name, "state": state})
        for pid, group, state, at in (
            ("rp-0", "shop", "failed", "2026-01-01 00:00:00.000000"),  # never committed
            ("rp-1", "shop", "committed", "2026-01-02 03:04:05.000000"),
            ("rp-2", "fresh", "deleted", "2026-02-01 00:00:00.000000"),
        ):
            conn.execute(text(_POINT), {"id": pid, "group": group, "state": state, "at": at})
    engine.dispose()
    before = datetime.now(UTC)
    cat = Catalog.open(url)  # upgrades to head
    try:
        history = accounting.state_changes(cat, datetime.now(UTC) + timedelta(days=1))
        assert set(history) == {"shop", "fresh"}  # idle never had a point
        shop = history["shop"]
        assert [(c.state, c.at) for c in shop[:1]] == [
            (GroupState.PROTECTED, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
        ]
        assert shop[1].state is GroupState.SUSPENDED and shop[1].at >= before
        assert [c.state for c in history["fresh"]] == [GroupState.PROTECTED]
        # from now on every change is recorded where the state is set
        cat.set_group_state("shop", GroupState.PROTECTED)
        after = accounting.state_changes(cat, datetime.now(UTC) + timedelta(days=1))["shop"]
        assert [c.state for c in after] == [
            GroupState.PROTECTED, GroupState.SUSPENDED, GroupState.PROTECTED
        ]  # fmt: skip
    finally:
        cat.close()
    with create_engine(url).begin() as conn:  # and back down to 0004
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
        names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
        assert "group_state_changes" not in names and "project_quotas" not in names


def test_quota_rows(catalog_url: str) -> None:
    cat = Catalog.open(catalog_url)
    try:
        assert accounting.quota(cat, "p1") == QuotaLimits()
        big = 2**60
        assert accounting.set_quota(cat, "p1", {"protected_bytes": big}) == QuotaLimits(None, big)
        assert accounting.set_quota(cat, "p1", {"groups": 0}) == QuotaLimits(0, big, None)
        assert accounting.quotas(cat) == {"p1": QuotaLimits(0, big, None)}
        accounting.set_quota(cat, "p1", {"groups": None, "protected_bytes": None})
        assert accounting.quotas(cat) == {}  # no limit left: the row is gone
        assert accounting.set_quota(cat, "p2", {"points": None}) == QuotaLimits()
        assert accounting.quotas(cat) == {}
    finally:
        cat.close()
