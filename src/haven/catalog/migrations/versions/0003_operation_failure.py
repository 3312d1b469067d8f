"""operation failure: the error's class name and exit code

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 07:00:00.000000

A failed operation records which error failed it (``error_type``) and the exit code the
error contract gives that error (``exit_code``), so that the CLI exits with it instead
of a blanket 5. Rows written before this revision read as "" and NULL (exit 5 as then).
Recovery-point damage needs no column: it lives in the point's ``data`` document.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("error_type", sa.String(length=128), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("exit_code", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_column("exit_code")
        batch_op.drop_column("error_type")
