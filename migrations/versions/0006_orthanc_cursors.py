"""Orthanc cursors: how far the C-STORE pick-up has read each institution's change log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orthanc_cursors",
        sa.Column("institution_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_change", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_orthanc_cursors_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("institution_id", name=op.f("pk_orthanc_cursors")),
    )


def downgrade() -> None:
    op.drop_table("orthanc_cursors")
