"""Teleconsults: sessions for referrals, invited participants, recording consents,
quality samples and recording files.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "teleconsults",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("referral_id", sa.Integer(), nullable=False),
        sa.Column("origin_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("agreement_id", sa.Integer(), nullable=True),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("specialty", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("low_bandwidth", sa.Boolean(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=60), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("outcome_note", sa.Text(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["agreements.id"],
            name=op.f("fk_teleconsults_agreement_id_agreements"),
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["users.id"], name=op.f("fk_teleconsults_host_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["line_id"], ["coverage_lines.id"], name=op.f("fk_teleconsults_line_id_coverage_lines")
        ),
        sa.ForeignKeyConstraint(
            ["origin_id"], ["institutions.id"], name=op.f("fk_teleconsults_origin_id_institutions")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["institutions.id"],
            name=op.f("fk_teleconsults_provider_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teleconsults")),
    )
    op.create_index(
        "ix_teleconsults_origin_starts", "teleconsults", ["origin_id", "starts_at"], unique=False
    )
    op.create_index(
        "ix_teleconsults_provider_starts",
        "teleconsults",
        ["provider_id", "starts_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_teleconsults_referral_id"), "teleconsults", ["referral_id"], unique=False
    )
    op.create_table(
        "teleconsult_participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("teleconsult_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("host", sa.Boolean(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("lang", sa.String(length=5), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=True),
        sa.Column("secret_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("joins", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_teleconsult_participants_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["teleconsult_id"],
            ["teleconsults.id"],
            name=op.f("fk_teleconsult_participants_teleconsult_id_teleconsults"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_teleconsult_participants_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teleconsult_participants")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_teleconsult_participants_secret_hash")),
        sa.UniqueConstraint(
            "teleconsult_id", "user_id", name=op.f("uq_teleconsult_participants_teleconsult_id")
        ),
    )
    op.create_index(
        op.f("ix_teleconsult_participants_teleconsult_id"),
        "teleconsult_participants",
        ["teleconsult_id"],
        unique=False,
    )
    op.create_table(
        "teleconsult_recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("teleconsult_id", sa.Integer(), nullable=False),
        sa.Column("stored_name", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=80), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["teleconsult_id"],
            ["teleconsults.id"],
            name=op.f("fk_teleconsult_recordings_teleconsult_id_teleconsults"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teleconsult_recordings")),
        sa.UniqueConstraint("stored_name", name=op.f("uq_teleconsult_recordings_stored_name")),
    )
    op.create_index(
        op.f("ix_teleconsult_recordings_teleconsult_id"),
        "teleconsult_recordings",
        ["teleconsult_id"],
        unique=False,
    )
    op.create_table(
        "teleconsult_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("teleconsult_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["teleconsult_participants.id"],
            name=op.f("fk_teleconsult_consents_participant_id_teleconsult_participants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["teleconsult_id"],
            ["teleconsults.id"],
            name=op.f("fk_teleconsult_consents_teleconsult_id_teleconsults"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teleconsult_consents")),
        sa.UniqueConstraint(
            "participant_id", "purpose", name=op.f("uq_teleconsult_consents_participant_id")
        ),
    )
    op.create_index(
        op.f("ix_teleconsult_consents_teleconsult_id"),
        "teleconsult_consents",
        ["teleconsult_id"],
        unique=False,
    )
    op.create_table(
        "teleconsult_quality_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("teleconsult_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rtt_ms", sa.Float(), nullable=True),
        sa.Column("packet_loss_pct", sa.Float(), nullable=True),
        sa.Column("audio_in_kbps", sa.Float(), nullable=True),
        sa.Column("audio_out_kbps", sa.Float(), nullable=True),
        sa.Column("video_in_kbps", sa.Float(), nullable=True),
        sa.Column("video_out_kbps", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["teleconsult_participants.id"],
            name=op.f("fk_teleconsult_quality_samples_participant_id_teleconsult_participants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["teleconsult_id"],
            ["teleconsults.id"],
            name=op.f("fk_teleconsult_quality_samples_teleconsult_id_teleconsults"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teleconsult_quality_samples")),
    )
    op.create_index(
        "ix_teleconsult_quality_samples_participant_at",
        "teleconsult_quality_samples",
        ["participant_id", "received_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_teleconsult_quality_samples_teleconsult_id"),
        "teleconsult_quality_samples",
        ["teleconsult_id"],
        unique=False,
    )


def downgrade() -> None:

    op.drop_index(
        op.f("ix_teleconsult_quality_samples_teleconsult_id"),
        table_name="teleconsult_quality_samples",
    )
    op.drop_index(
        "ix_teleconsult_quality_samples_participant_at", table_name="teleconsult_quality_samples"
    )
    op.drop_table("teleconsult_quality_samples")
    op.drop_index(op.f("ix_teleconsult_consents_teleconsult_id"), table_name="teleconsult_consents")
    op.drop_table("teleconsult_consents")
    op.drop_index(
        op.f("ix_teleconsult_recordings_teleconsult_id"), table_name="teleconsult_recordings"
    )
    op.drop_table("teleconsult_recordings")
    op.drop_index(
        op.f("ix_teleconsult_participants_teleconsult_id"), table_name="teleconsult_participants"
    )
    op.drop_table("teleconsult_participants")
    op.drop_index(op.f("ix_teleconsults_referral_id"), table_name="teleconsults")
    op.drop_index("ix_teleconsults_provider_starts", table_name="teleconsults")
    op.drop_index("ix_teleconsults_origin_starts", table_name="teleconsults")
    op.drop_table("teleconsults")
