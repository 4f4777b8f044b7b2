"""the call centre (issue 15): incoming calls kept with their orders

Revision ID: 0017_calls
Revises: 0016_callbacks
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0017_calls"
down_revision: str | None = "0016_callbacks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled by the part that owns it


def downgrade() -> None:
    pass
