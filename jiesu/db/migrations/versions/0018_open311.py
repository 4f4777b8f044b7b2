"""Open311 GeoReport v2 (issue 15): api keys, service request ids

Revision ID: 0018_open311
Revises: 0017_calls
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0018_open311"
down_revision: str | None = "0017_calls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # PLACEHOLDER: filled by the part that owns it


def downgrade() -> None:
    pass
