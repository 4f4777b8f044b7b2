"""indexes and storage for volume (issue 17 §3)

Revision ID: 0024_volume
Revises: 0023_heartbeat
"""

from collections.abc import Sequence

revision: str = "0024_volume"
down_revision: str | None = "0023_heartbeat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
