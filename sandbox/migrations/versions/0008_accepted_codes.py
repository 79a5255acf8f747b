"""accepted_codes: credit codes the bureau accepts though their check characters do not conform

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 02:35:29.494099

A new table and nothing else (see core.accepted_codes): existing rows are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accepted_codes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("code", sa.String(length=18), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("accepted_by", sa.String(length=160), nullable=False),
        sa.Column("accepted_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=160), nullable=True),
        sa.Column("withdraw_reason", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accepted_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_accepted_codes_code")),
    )


def downgrade() -> None:
    op.drop_table("accepted_codes")
