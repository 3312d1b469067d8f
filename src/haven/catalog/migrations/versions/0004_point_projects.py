"""point projects: the project infrastructure captured with a recovery point

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 08:00:00.000000

Sites whose servers live in a project (OpenStack) record, with each point, what the
group's servers depend on there (networks, routers, security groups, keypairs, flavors,
volume types, floating IPs, role assignments): recovery rebuilds it at the recovery site
from this record, with the protected site gone. Points without a row recover servers only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "point_projects",
        sa.Column("point_id", sa.String(length=40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("point_id"),
    )


def downgrade() -> None:
    op.drop_table("point_projects")
