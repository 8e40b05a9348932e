"""User shows: a lookup key for a show's title, unique, so a show is found by id or by title.

Revision ID: 0003_user_shows
Revises: 0001
Create Date: 2026-12-03 06:45:00.000000

The `shows` table itself is in 0001; CreateShow (services/script/shows.py) is its first writer.
Rows written before this revision (none are: nothing wrote shows then) get a key that cannot
collide, their id and title; they are found by id, and by title once replaced.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_user_shows"
down_revision: str | Sequence[str] | None = "0002_series"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shows", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("title_key", sa.String(length=200), nullable=False, server_default="")
        )
    op.execute("UPDATE shows SET title_key = lower(id) || ':' || lower(title)")
    with op.batch_alter_table("shows", schema=None) as batch_op:
        batch_op.alter_column("title_key", server_default=None)
        batch_op.create_index("ix_shows_title_key", ["title_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("shows", schema=None) as batch_op:
        batch_op.drop_index("ix_shows_title_key")
        batch_op.drop_column("title_key")
