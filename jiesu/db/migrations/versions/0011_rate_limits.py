"""sign-in and tracking limits per account, per ticket number and per address

(Placeholder: the schema change lands with the work that needs it.)

Revision ID: 0011_rate_limits
Revises: 0010_month_freeze
"""

from collections.abc import Sequence

revision: str = "0011_rate_limits"
down_revision: str | None = "0010_month_freeze"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
