"""group project: the Keystone project owning a group; idempotency keys of submissions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 10:30:00.000000

``groups.project`` (indexed) is the Keystone project id that owns a group (NULL:
operator-owned); plans, points and operations belong to their group's project, so the
API filters every list by it in SQL. The group's ``spec`` document holds the same value
(the codec form of ProtectionGroup); the column is its key copy, written with it.

``idempotency_keys``: an ``Idempotency-Key`` a project sent with an operation submit, the
hash of the request it came with and the operation it created; the primary key makes
concurrent replays of one key create one operation.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("project", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_groups_project", ["project"])
    op.create_table(
        "idempotency_keys",
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("operation_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project", "key"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.drop_index("ix_groups_project")
        batch_op.drop_column("project")
