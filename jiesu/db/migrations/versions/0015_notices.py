"""SMS and email notices (issue 15): opt-outs, units' email addresses

Revision ID: 0015_notices
Revises: 0014_delivery
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0015_notices"
down_revision: str | None = "0014_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled by the part that owns it


def downgrade() -> None:
    pass
