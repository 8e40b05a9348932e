"""Series bibles: one row per version of a series' bible (the season feature).

Revision ID: 0002_series
Revises: 0001
Create Date: 2026-12-03 06:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_series"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "series_bibles",
        sa.Column("series_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("episode_number", sa.Integer(), nullable=False),
        sa.Column("proto", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_series_bibles_series_id_series")
        ),
        sa.PrimaryKeyConstraint("series_id", "version", name=op.f("pk_series_bibles")),
    )


def downgrade() -> None:
    op.drop_table("series_bibles")
