"""sign-in, tracking and portal limits: a counter per key shared by every app process

Failed look-ups of one ticket number (from any address) and portal submissions (per address
and in all) are counted in fixed windows in `rate_counter` (rules: jiesu/auth/limits.py). The
per-account lock keeps using `app_user.failed_logins` / `locked_until`, now with doubling locks.

Revision ID: 0011_rate_limits
Revises: 0010_month_freeze
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_rate_limits"
down_revision: str | None = "0010_month_freeze"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_counter",
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("strikes", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_rate_counter")),
    )
    op.create_index("ix_rate_counter_window_start", "rate_counter", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_rate_counter_window_start", table_name="rate_counter")
    op.drop_table("rate_counter")
