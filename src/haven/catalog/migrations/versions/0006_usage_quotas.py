"""usage and quotas: group state history, per-project quotas

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-29 10:30:00.000000

``group_state_changes``: every state a group enters from now on, with its time; usage
integrates protected GB-hours over it. Older catalogs kept no such history: each group
that had a committed point is given a ``protected`` row at its first point and, if it
is in another state now, a row for that state at migration time (so suspensions and
failovers before this revision count as protected time: docs/usage-and-quotas.md).

``project_quotas``: per-project limits on groups, protected bytes and points (null:
unlimited).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ONCE_COMMITTED = ("committed", "damaged", "expired", "deleted")


def upgrade() -> None:
    changes = op.create_table(
        "group_state_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_name", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("group_state_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_group_state_changes_group_name"), ["group_name"], unique=False
        )
    op.create_table(
        "project_quotas",
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("groups", sa.Integer(), nullable=True),
        sa.Column("protected_bytes", sa.BigInteger(), nullable=True),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project"),
    )
    _seed_history(changes)


def _seed_history(changes: sa.Table) -> None:
    conn = op.get_bind()
    points = sa.table(
        "recovery_points",
        sa.column("group_name", sa.String()),
        sa.column("state", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    groups = sa.table("groups", sa.column("name"), sa.column("state"))
    first = dict(
        conn.execute(
            sa.select(points.c.group_name, sa.func.min(points.c.created_at))
            .where(points.c.state.in_(_ONCE_COMMITTED))
            .group_by(points.c.group_name)
        ).all()
    )
    now = datetime.now(UTC)
    rows = []
    for name, state in conn.execute(sa.select(groups.c.name, groups.c.state)).all():
        if name not in first:
            continue
        rows.append({"group_name": name, "state": "protected", "changed_at": first[name]})
        if state != "protected":
            rows.append({"group_name": name, "state": state, "changed_at": now})
    if rows:
        op.bulk_insert(changes, rows)


def downgrade() -> None:
    op.drop_table("project_quotas")
    with op.batch_alter_table("group_state_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_state_changes_group_name"))
    op.drop_table("group_state_changes")
