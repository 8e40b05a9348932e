"""Batch jobs carry their stage, their error, and a claim (which poller works on them, until
when), so a restarted or second replica resumes a job exactly once.

Revision ID: 0004_batch_jobs
Revises: 0001 (the lead chains it after 0002 and 0003 at merge)
Create Date: 2026-12-03 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_batch_jobs"
down_revision: str | Sequence[str] | None = "0003_user_shows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stage", sa.String(length=16), nullable=False, server_default="outline")
        )
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("error")
        batch_op.drop_column("stage")
