"""Coverage lines carry their imaging de-identification options.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("coverage_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("imaging", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("coverage_lines", schema=None) as batch_op:
        batch_op.drop_column("imaging")
