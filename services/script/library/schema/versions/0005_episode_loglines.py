"""Episodes keep their latest draft's logline, so ListEpisodes shows it without reading every
draft's script (a page of 100 stays one indexed query).

Revision ID: 0005_episode_loglines
Revises: 0004_batch_jobs
Create Date: 2026-12-03 10:05:00

Episodes stored before this revision get the logline of their latest draft (read from its
proto), in the same transaction as the new column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from doppelganger.v1 import episode_pb2

revision: str = "0005_episode_loglines"
down_revision: str | Sequence[str] | None = "0004_batch_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOGLINE = 1000  # models.LOGLINE


def upgrade() -> None:
    # A plain ADD COLUMN (no table rebuild: on SQLite a rebuild of `episodes` would trip the
    # drafts' foreign keys); the server default stays, so rows written by an older replica
    # during a rolling upgrade get "" too.
    op.add_column(
        "episodes",
        sa.Column("logline", sa.String(length=LOGLINE), nullable=False, server_default=""),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT episodes.id, drafts.proto FROM episodes "
            "JOIN drafts ON drafts.id = episodes.latest_draft_id"
        )
    ).all()
    for episode_id, data in rows:
        logline = episode_pb2.Episode.FromString(bytes(data)).outline.logline[:LOGLINE]
        if logline:
            bind.execute(
                sa.text("UPDATE episodes SET logline = :logline WHERE id = :id"),
                {"logline": logline, "id": episode_id},
            )


def downgrade() -> None:
    op.drop_column("episodes", "logline")  # Native DROP COLUMN (SQLite 3.35+, PostgreSQL).
