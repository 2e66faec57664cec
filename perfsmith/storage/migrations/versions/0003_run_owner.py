"""The process that works on a run

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("runs", sa.Column("owner", sa.String(length=160), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "owner")
