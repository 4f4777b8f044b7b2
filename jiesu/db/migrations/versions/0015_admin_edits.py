"""the admin edits the city (issue 14)

Placeholder: no schema change yet.

Revision ID: 0015_admin_edits
Revises: 0014_reports
"""

from collections.abc import Sequence

revision: str = "0015_admin_edits"
down_revision: str | None = "0014_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
