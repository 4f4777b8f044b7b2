"""knowledge encoder vectors (issue 16)

Revision ID: 0022_knowledge_encoder
Revises: 0021_knowledge_search
"""

from collections.abc import Sequence

revision: str = "0022_knowledge_encoder"
down_revision: str | None = "0021_knowledge_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder: filled by the part that needs it, or left empty


def downgrade() -> None:
    pass
