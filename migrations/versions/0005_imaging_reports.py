"""Imaging reports: the radiologist's signed report on a share, one per share.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imaging_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.Column("impression", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_imaging_reports_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["share_id"],
            ["imaging_shares.id"],
            name=op.f("fk_imaging_reports_share_id_imaging_shares"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_reports")),
        sa.UniqueConstraint("share_id", name=op.f("uq_imaging_reports_share_id")),
    )


def downgrade() -> None:
    op.drop_table("imaging_reports")
