"""delivery of the outbox (issue 15): subscribers, deliveries, the delivery log

Revision ID: 0014_delivery
Revises: 0013_admin_edits
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0014_delivery"
down_revision: str | None = "0013_admin_edits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled by the part that owns it


def downgrade() -> None:
    pass
