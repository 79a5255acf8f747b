"""programs and jobs

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:35:27.980636
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "programs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("operator_id", sa.String(length=36), nullable=False),
        sa.Column("authorization_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("analysis", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exact_release_allowed", sa.Boolean(), nullable=False),
        sa.Column("approved_sha256", sa.String(length=64), nullable=True),
        sa.Column("submitted_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decision_comment", sa.String(length=1000), nullable=True),
        sa.CheckConstraint(
            "status != 'approved' OR approved_sha256 IS NOT NULL", name=op.f("ck_programs_approval_pins_hash")
        ),
        sa.CheckConstraint(
            "status IN ('pending_review', 'approved', 'rejected')", name=op.f("ck_programs_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["authorization_id"],
            ["authorizations.id"],
            name=op.f("fk_programs_authorization_id_authorizations"),
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_programs_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programs")),
    )
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_programs_authorization_id"), ["authorization_id"], unique=False)
        batch_op.create_index("ix_programs_operator_submitted", ["operator_id", "submitted_at"], unique=False)
        batch_op.create_index("ix_programs_status_submitted", ["status", "submitted_at"], unique=False)

    op.create_table(
        "compute_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("operator_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("authorization_id", sa.String(length=36), nullable=False),
        sa.Column("program_sha256", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("release", sa.String(length=8), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=True),
        sa.Column("partitions", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=18), nullable=True),
        sa.Column("consent_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("charged", sa.Boolean(), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("claim_token", sa.String(length=36), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("queued_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "release = 'exact' OR (epsilon > 0 AND partitions >= 2)",
            name=op.f("ck_compute_jobs_private_has_epsilon"),
        ),
        sa.CheckConstraint("release IN ('private', 'exact')", name=op.f("ck_compute_jobs_release_known")),
        sa.CheckConstraint(
            "status != 'running' OR claim_token IS NOT NULL", name=op.f("ck_compute_jobs_running_is_claimed")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'denied')",
            name=op.f("ck_compute_jobs_status_known"),
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name=op.f("ck_compute_jobs_progress_fraction")),
        sa.ForeignKeyConstraint(
            ["authorization_id"],
            ["authorizations.id"],
            name=op.f("fk_compute_jobs_authorization_id_authorizations"),
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_compute_jobs_operator_id_operators")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_compute_jobs_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_jobs")),
    )
    with op.batch_alter_table("compute_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_compute_jobs_authorization_id"), ["authorization_id"], unique=False
        )
        batch_op.create_index("ix_compute_jobs_operator_queued", ["operator_id", "queued_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_compute_jobs_program_id"), ["program_id"], unique=False)
        batch_op.create_index("ix_compute_jobs_status_queued", ["status", "queued_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("compute_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_compute_jobs_status_queued")
        batch_op.drop_index(batch_op.f("ix_compute_jobs_program_id"))
        batch_op.drop_index("ix_compute_jobs_operator_queued")
        batch_op.drop_index(batch_op.f("ix_compute_jobs_authorization_id"))

    op.drop_table("compute_jobs")
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.drop_index("ix_programs_status_submitted")
        batch_op.drop_index("ix_programs_operator_submitted")
        batch_op.drop_index(batch_op.f("ix_programs_authorization_id"))

    op.drop_table("programs")
