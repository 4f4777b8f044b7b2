"""knowledge learning (issue 16)

Revision ID: 0023_knowledge_learning
Revises: 0022_knowledge_encoder
"""

from collections.abc import Sequence

revision: str = "0023_knowledge_learning"
down_revision: str | None = "0022_knowledge_encoder"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder: filled by the part that needs it, or left empty


def downgrade() -> None:
    pass
