"""import of historical orders (issue 15): external ids

Revision ID: 0019_imports
Revises: 0018_open311
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_imports"
down_revision: str | None = "0018_open311"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "imported_order",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("source", sa.String(length=60), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("ticket_id", BIG_ID, nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("timeline_hash", sa.String(length=64), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_imported_order_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imported_order")),
        sa.UniqueConstraint(
            "source", "external_id", name=op.f("uq_imported_order_source_external_id")
        ),
    )
    with op.batch_alter_table("imported_order", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_imported_order_ticket_id"), ["ticket_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("imported_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imported_order_ticket_id"))
    op.drop_table("imported_order")
