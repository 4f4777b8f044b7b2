"""knowledge search index (issue 16)

Revision ID: 0021_knowledge_search
Revises: 0020_knowledge
"""

from collections.abc import Sequence

revision: str = "0021_knowledge_search"
down_revision: str | None = "0020_knowledge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder: filled by the part that needs it, or left empty


def downgrade() -> None:
    pass
