"""accounts.username_key: usernames unique in any case, enforced by the database

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 17:20:00

Until now only the service checked that no other account had the same username in another case,
so two requests could race past that check. Existing accounts get their key (the username in
lower case; usernames are ASCII). If two of them already clash, the upgrade stops and names them:
rename or remove one, then upgrade again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("username_key", sa.String(length=64), nullable=True))
    accounts = sa.table("accounts", sa.column("id", sa.String), sa.column("username", sa.String),
                        sa.column("username_key", sa.String))  # fmt: skip
    conn = op.get_bind()
    taken: dict[str, str] = {}
    for account_id, username in conn.execute(sa.select(accounts.c.id, accounts.c.username)).all():
        key = username.lower()
        if key in taken:
            raise RuntimeError(
                f"accounts {taken[key]!r} and {username!r} differ only in case: rename or remove one "
                "of them, then upgrade again"
            )
        taken[key] = username
        conn.execute(sa.update(accounts).where(accounts.c.id == account_id).values(username_key=key))
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("username_key", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint("uq_accounts_username_key", ["username_key"])


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint("uq_accounts_username_key", type_="unique")
        batch.drop_column("username_key")
