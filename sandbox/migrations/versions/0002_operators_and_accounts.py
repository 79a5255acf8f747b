"""operators and accounts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:02:29.228355
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=18), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role <> 'subject' OR subject_id IS NOT NULL", name=op.f("ck_accounts_subject_has_id")
        ),
        sa.CheckConstraint(
            "role IN ('admin', 'reviewer', 'auditor', 'subject')", name=op.f("ck_accounts_role_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("username", name=op.f("uq_accounts_username")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounts_subject_id"), ["subject_id"], unique=False)

    op.create_table(
        "operators",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("license_no", sa.String(length=64), nullable=False),
        sa.Column("qualifications", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f("ck_operators_status_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("credit_code", name=op.f("uq_operators_credit_code")),
    )
    op.create_table(
        "operator_credentials",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.String(length=36), nullable=False),
        sa.Column("secret_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_operator_credentials_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_operator_credentials")),
    )
    with op.batch_alter_table("operator_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operator_credentials_operator_id"), ["operator_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("operator_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_credentials_operator_id"))

    op.drop_table("operator_credentials")
    op.drop_table("operators")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_subject_id"))

    op.drop_table("accounts")
