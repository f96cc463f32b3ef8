"""Imaging shares: de-identified copies of a study made for a referral's provider.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imaging_shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("shared_study_uid", sa.String(length=64), nullable=True),
        sa.Column("referral_id", sa.Integer(), nullable=False),
        sa.Column("origin_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("agreement_id", sa.Integer(), nullable=True),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("identification", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("blocked_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["agreements.id"],
            name=op.f("fk_imaging_shares_agreement_id_agreements"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_imaging_shares_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["coverage_lines.id"],
            name=op.f("fk_imaging_shares_line_id_coverage_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["origin_id"],
            ["institutions.id"],
            name=op.f("fk_imaging_shares_origin_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["institutions.id"],
            name=op.f("fk_imaging_shares_provider_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_shares")),
    )
    op.create_index(
        "ix_imaging_shares_origin_status", "imaging_shares", ["origin_id", "status"], unique=False
    )
    op.create_index(
        "ix_imaging_shares_provider_status",
        "imaging_shares",
        ["provider_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_imaging_shares_referral_study",
        "imaging_shares",
        ["referral_id", "study_uid"],
        unique=False,
    )
    op.create_index(
        op.f("ix_imaging_shares_shared_study_uid"),
        "imaging_shares",
        ["shared_study_uid"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_imaging_shares_shared_study_uid"), table_name="imaging_shares")
    op.drop_index("ix_imaging_shares_referral_study", table_name="imaging_shares")
    op.drop_index("ix_imaging_shares_provider_status", table_name="imaging_shares")
    op.drop_index("ix_imaging_shares_origin_status", table_name="imaging_shares")
    op.drop_table("imaging_shares")
