"""sealed results and the aggregate answer cache

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 11:55:53.492195
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sealed_results",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("operator_id", sa.String(length=36), nullable=False),
        sa.Column("authorization_id", sa.String(length=36), nullable=False),
        sa.Column("issued_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("seal", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('verification', 'aggregate', 'compute')", name=op.f("ck_sealed_results_kind_known")
        ),
        sa.ForeignKeyConstraint(
            ["authorization_id"],
            ["authorizations.id"],
            name=op.f("fk_sealed_results_authorization_id_authorizations"),
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_sealed_results_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_sealed_results")),
        sa.UniqueConstraint("audit_seq", name=op.f("uq_sealed_results_audit_seq")),
    )
    with op.batch_alter_table("sealed_results", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sealed_results_authorization_id"), ["authorization_id"], unique=False
        )
        batch_op.create_index("ix_sealed_results_operator_issued", ["operator_id", "issued_at"], unique=False)

    op.create_table(
        "aggregate_answers",
        sa.Column("authorization_id", sa.String(length=36), nullable=False),
        sa.Column("query_sha256", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["authorization_id"],
            ["authorizations.id"],
            name=op.f("fk_aggregate_answers_authorization_id_authorizations"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["sealed_results.job_id"], name=op.f("fk_aggregate_answers_job_id_sealed_results")
        ),
        sa.PrimaryKeyConstraint("authorization_id", "query_sha256", name=op.f("pk_aggregate_answers")),
        sa.UniqueConstraint("job_id", name=op.f("uq_aggregate_answers_job_id")),
    )


def downgrade() -> None:
    op.drop_table("aggregate_answers")
    with op.batch_alter_table("sealed_results", schema=None) as batch_op:
        batch_op.drop_index("ix_sealed_results_operator_issued")
        batch_op.drop_index(batch_op.f("ix_sealed_results_authorization_id"))

    op.drop_table("sealed_results")
