"""audit_head.last_at: the last event's time, so no event is stamped earlier than the one before

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 11:00:00.000000

One nullable column, set from the log as it stands (its latest time). Events already
written keep their times; from here on ``record_event`` stamps each event no earlier than the
last (see audit.services).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("last_at", core.db.UTCDateTime(timezone=True), nullable=True))
    # The latest time in the log, not the last event's: in a log whose clock was once set back
    # the two differ, and every later event must come after all of it.
    op.execute("UPDATE audit_head SET last_at = (SELECT max(occurred_at) FROM audit_events)")


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("last_at")
