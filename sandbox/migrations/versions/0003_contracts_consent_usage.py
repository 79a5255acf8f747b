"""contracts consent usage

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:16:21.109957
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "authorizations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("operator_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("operations", sa.JSON(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("daily_quota", sa.Integer(), nullable=False),
        sa.Column("epsilon_total", sa.Float(), nullable=False),
        sa.Column("epsilon_per_query", sa.Float(), nullable=False),
        sa.Column("min_cell_size", sa.Integer(), nullable=False),
        sa.Column("consent_required", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("requested_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decision_comment", sa.String(length=1000), nullable=True),
        sa.Column("valid_from", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("valid_until", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(length=500), nullable=True),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'revoked')",
            name=op.f("ck_authorizations_status_known"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'rejected') OR (valid_from IS NOT NULL AND valid_until IS NOT NULL)",
            name=op.f("ck_authorizations_validity_when_approved"),
        ),
        sa.CheckConstraint("daily_quota >= 1", name=op.f("ck_authorizations_daily_quota_positive")),
        sa.CheckConstraint(
            "epsilon_per_query > 0 AND epsilon_per_query <= epsilon_total",
            name=op.f("ck_authorizations_epsilon_caps"),
        ),
        sa.CheckConstraint(
            "epsilon_spent >= 0 AND epsilon_spent <= epsilon_total + 1e-09",
            name=op.f("ck_authorizations_epsilon_within_budget"),
        ),
        sa.CheckConstraint("min_cell_size >= 1", name=op.f("ck_authorizations_min_cell_size_positive")),
        sa.CheckConstraint("valid_days >= 1", name=op.f("ck_authorizations_valid_days_positive")),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_authorizations_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorizations")),
    )
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_authorizations_operator_id"), ["operator_id"], unique=False)

    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subject_id", sa.String(length=18), nullable=False),
        sa.Column("operator_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=False),
        sa.Column("templates", sa.JSON(), nullable=False),
        sa.Column("granted_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("valid_until > granted_at", name=op.f("ck_consents_validity_positive")),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_consents_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consents_operator_id"), ["operator_id"], unique=False)
        batch_op.create_index("ix_consents_subject_operator", ["subject_id", "operator_id"], unique=False)

    op.create_table(
        "authorization_usage",
        sa.Column("authorization_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.CheckConstraint("calls >= 0", name=op.f("ck_authorization_usage_calls_nonnegative")),
        sa.ForeignKeyConstraint(
            ["authorization_id"],
            ["authorizations.id"],
            name=op.f("fk_authorization_usage_authorization_id_authorizations"),
        ),
        sa.PrimaryKeyConstraint("authorization_id", "day", name=op.f("pk_authorization_usage")),
    )
    op.create_table(
        "subject_accesses",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("subject_id", sa.String(length=18), nullable=False),
        sa.Column("operator_id", sa.String(length=36), nullable=False),
        sa.Column("operator_name", sa.String(length=200), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("authorization_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("accessed_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('success', 'denied', 'failed')", name=op.f("ck_subject_accesses_outcome_known")
        ),
        sa.ForeignKeyConstraint(
            ["authorization_id"],
            ["authorizations.id"],
            name=op.f("fk_subject_accesses_authorization_id_authorizations"),
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_subject_accesses_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_accesses")),
    )
    with op.batch_alter_table("subject_accesses", schema=None) as batch_op:
        batch_op.create_index("ix_subject_accesses_subject_id", ["subject_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("subject_accesses", schema=None) as batch_op:
        batch_op.drop_index("ix_subject_accesses_subject_id")

    op.drop_table("subject_accesses")
    op.drop_table("authorization_usage")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index("ix_consents_subject_operator")
        batch_op.drop_index(batch_op.f("ix_consents_operator_id"))

    op.drop_table("consents")
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorizations_operator_id"))

    op.drop_table("authorizations")
