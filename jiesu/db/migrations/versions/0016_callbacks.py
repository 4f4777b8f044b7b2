"""SMS callbacks (issue 15): inbound SMS replies, rating links

Revision ID: 0016_callbacks
Revises: 0015_notices
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0016_callbacks"
down_revision: str | None = "0015_notices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled by the part that owns it


def downgrade() -> None:
    pass
