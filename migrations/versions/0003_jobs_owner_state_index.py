"""An index on jobs (owner_id, state) for the unfinished-jobs quota count that runs on every submit.

Without it the count read the owner's whole history (PostgreSQL chose a sequential scan of the table),
or every owner's queued jobs through the state index; with it, it reads only the owner's unfinished
jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_owner_state", "jobs", ["owner_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_jobs_owner_state", table_name="jobs")
