"""engine tables: created resources, group placement, point servers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 12:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "created_resources",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("operation_id", sa.String(length=40), nullable=False),
        sa.Column("group_name", sa.String(length=63), nullable=False),
        sa.Column("site", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("operation_id", "site", "kind", "ref", name="uq_created_resource"),
    )
    with op.batch_alter_table("created_resources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_created_resources_operation_id"), ["operation_id"], unique=False
        )
    op.create_table(
        "group_placement",
        sa.Column("group_name", sa.String(length=63), nullable=False),
        sa.Column("active_site", sa.String(length=63), nullable=False),
        sa.Column("standby_site", sa.String(length=63), nullable=False),
        sa.Column("servers", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_name"),
    )

    op.create_table(
        "point_servers",
        sa.Column("point_id", sa.String(length=40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("point_id"),
    )


def downgrade() -> None:
    op.drop_table("point_servers")
    op.drop_table("group_placement")
    with op.batch_alter_table("created_resources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_created_resources_operation_id"))
    op.drop_table("created_resources")
