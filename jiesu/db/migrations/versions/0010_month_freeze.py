"""published months: an assessment month's figures frozen at its cut-off

(Placeholder: the schema change lands with the work that needs it.)

Revision ID: 0010_month_freeze
Revises: 0009_text_search
"""

from collections.abc import Sequence

revision: str = "0010_month_freeze"
down_revision: str | None = "0009_text_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
