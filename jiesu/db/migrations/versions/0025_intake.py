"""intake under load (issue 17 §2)

Revision ID: 0025_intake
Revises: 0024_volume
"""

from collections.abc import Sequence

revision: str = "0025_intake"
down_revision: str | None = "0024_volume"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
