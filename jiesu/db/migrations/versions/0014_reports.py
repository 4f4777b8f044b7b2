"""reports and their fonts (issue 14)

Placeholder: no schema change yet.

Revision ID: 0014_reports
Revises: 0013_warnings
"""

from collections.abc import Sequence

revision: str = "0014_reports"
down_revision: str | None = "0013_warnings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
