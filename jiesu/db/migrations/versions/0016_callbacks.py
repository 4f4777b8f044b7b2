"""SMS callbacks (issue 15): inbound SMS replies, rating links

Revision ID: 0016_callbacks
Revises: 0015_notices
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016_callbacks"
down_revision: str | None = "0015_notices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sms_reply",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("gateway_id", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("to", sa.String(length=30), nullable=True),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("satisfaction", sa.String(length=24), nullable=True),
        sa.Column("solved", sa.Boolean(), nullable=True),
        sa.Column("result", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("ticket_id", BIG_ID, nullable=True),
        sa.Column("candidates", JSON, nullable=False),
        sa.Column("handled_by_id", sa.Integer(), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handled_note", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["handled_by_id"], ["app_user.id"], name=op.f("fk_sms_reply_handled_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_sms_reply_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_reply")),
        sa.UniqueConstraint("gateway_id", name=op.f("uq_sms_reply_gateway_id")),
    )
    with op.batch_alter_table("sms_reply", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_reply_phone"), ["phone"], unique=False)
        batch_op.create_index(
            "ix_sms_reply_status_received", ["status", "received_at"], unique=False
        )
        batch_op.create_index("ix_sms_reply_ticket", ["ticket_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sms_reply", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_reply_ticket")
        batch_op.drop_index("ix_sms_reply_status_received")
        batch_op.drop_index(batch_op.f("ix_sms_reply_phone"))
    op.drop_table("sms_reply")
