"""compute_jobs: a job may be a mock run (release 'mock'), with no ε or partitions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 14:00:00.000000

Two CHECK constraints widened; no row changes. A mock run is an exact run over mock rows made
from the schema (sandbox.compute.inputs.mock_inputs).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RELEASE = "ck_compute_jobs_release_known"
EPSILON = "ck_compute_jobs_private_has_epsilon"
PRIVATE = "epsilon > 0 AND partitions >= 2"


def upgrade() -> None:
    with op.batch_alter_table("compute_jobs") as batch:
        batch.drop_constraint(op.f(RELEASE), type_="check")
        batch.drop_constraint(op.f(EPSILON), type_="check")
        batch.create_check_constraint(op.f(RELEASE), "release IN ('private', 'exact', 'mock')")
        batch.create_check_constraint(
            op.f(EPSILON), "release != 'private' OR (epsilon > 0 AND partitions >= 2)"
        )


def downgrade() -> None:
    op.execute("DELETE FROM compute_jobs WHERE release = 'mock'")
    with op.batch_alter_table("compute_jobs") as batch:
        batch.drop_constraint(op.f(RELEASE), type_="check")
        batch.drop_constraint(op.f(EPSILON), type_="check")
        batch.create_check_constraint(op.f(RELEASE), "release IN ('private', 'exact')")
        batch.create_check_constraint(op.f(EPSILON), f"release = 'exact' OR ({PRIVATE})")
