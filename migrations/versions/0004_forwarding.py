"""Forwarding shares to the partner institution's own store.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:00:00
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
        "forwardings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.Integer(), nullable=False),
        sa.Column("target_url", sa.String(length=500), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_forwardings_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["share_id"], ["imaging_shares.id"], name=op.f("fk_forwardings_share_id_imaging_shares")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forwardings")),
        sa.UniqueConstraint("share_id", name=op.f("uq_forwardings_share_id")),
    )
    op.create_table(
        "forwarded_instances",
        sa.Column("forwarding_id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["forwarding_id"],
            ["forwardings.id"],
            name=op.f("fk_forwarded_instances_forwarding_id_forwardings"),
        ),
        sa.PrimaryKeyConstraint(
            "forwarding_id", "sop_instance_uid", name=op.f("pk_forwarded_instances")
        ),
    )


def downgrade() -> None:
    op.drop_table("forwarded_instances")
    op.drop_table("forwardings")
