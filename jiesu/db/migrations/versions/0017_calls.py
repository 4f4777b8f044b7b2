"""the call centre (issue 15): incoming calls kept with their orders

Revision ID: 0017_calls
Revises: 0016_callbacks
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_calls"
down_revision: str | None = "0016_callbacks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "call",
        sa.Column("id", BIG, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=20), nullable=False),
        sa.Column("called", sa.String(length=30), nullable=False),
        sa.Column("agent", sa.String(length=60), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ticket_id", BIG, nullable=True),
        sa.Column("recording_url", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["app_user.id"], name=op.f("fk_call_agent_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_call_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call")),
        sa.UniqueConstraint("call_id", name=op.f("uq_call_call_id")),
    )
    op.create_index("ix_call_agent_id", "call", ["agent_id", "id"])
    op.create_index("ix_call_caller", "call", ["caller"])
    op.create_index("ix_call_ticket_id", "call", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_call_ticket_id", table_name="call")
    op.drop_index("ix_call_caller", table_name="call")
    op.drop_index("ix_call_agent_id", table_name="call")
    op.drop_table("call")
