"""knowledge encoder vectors (issue 16)

Revision ID: 0022_knowledge_encoder
Revises: 0021_knowledge_search
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_knowledge_encoder"
down_revision: str | None = "0021_knowledge_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kb_vector",
        sa.Column("entry_id", BIG, nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=60), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("serial", BIG, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entry.id"], name=op.f("fk_kb_vector_entry_id_kb_entry")
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_kb_vector")),
    )
    with op.batch_alter_table("kb_vector", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_vector_serial"), ["serial"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("kb_vector", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_vector_serial"))
    op.drop_table("kb_vector")
