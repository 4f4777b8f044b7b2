"""early warnings and proactive tasks (issue 14)

Placeholder: no schema change yet.

Revision ID: 0013_warnings
Revises: 0012_rule_changes
"""

from collections.abc import Sequence

revision: str = "0013_warnings"
down_revision: str | None = "0012_rule_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
