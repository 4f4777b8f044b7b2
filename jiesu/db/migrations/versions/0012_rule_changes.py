"""rule changes (calendar, tiers, scores) propagate to open orders and figures

(Placeholder: the schema change lands with the work that needs it.)

Revision ID: 0012_rule_changes
Revises: 0011_rate_limits
"""

from collections.abc import Sequence

revision: str = "0012_rule_changes"
down_revision: str | None = "0011_rate_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
