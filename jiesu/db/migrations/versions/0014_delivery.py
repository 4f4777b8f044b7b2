"""delivery of the outbox (issue 15): subscribers, deliveries, the delivery log

Revision ID: 0014_delivery
Revises: 0013_admin_edits
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014_delivery"
down_revision: str | None = "0013_admin_edits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhook_subscriber",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("event_types", Json, nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("personal_data", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("secret_rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["unit.id"], name=op.f("fk_webhook_subscriber_unit_id_unit")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["app_user.id"], name=op.f("fk_webhook_subscriber_created_by_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriber")),
    )
    op.create_table(
        "delivery",
        sa.Column("id", BigId, nullable=False),
        sa.Column("outbox_id", BigId, nullable=False),
        sa.Column("ticket_id", BigId, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("body", Json, nullable=False),
        sa.Column("event_type", sa.String(60), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox.id"], name=op.f("fk_delivery_outbox_id_outbox")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_delivery_ticket_id_ticket")
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["webhook_subscriber.id"],
            name=op.f("fk_delivery_subscriber_id_webhook_subscriber"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
        sa.UniqueConstraint(
            "outbox_id", "channel", "key", name=op.f("uq_delivery_outbox_id_channel_key")
        ),
    )
    op.create_index("ix_delivery_due", "delivery", ["status", "next_at"])
    op.create_index("ix_delivery_list", "delivery", ["created_at", "id"])
    op.create_index("ix_delivery_subscriber", "delivery", ["subscriber_id", "status"])
    op.create_index(op.f("ix_delivery_ticket_id"), "delivery", ["ticket_id"])
    op.create_table(
        "delivery_attempt",
        sa.Column("id", BigId, nullable=False),
        sa.Column("delivery_id", BigId, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["delivery.id"], name=op.f("fk_delivery_attempt_delivery_id_delivery")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempt")),
    )
    op.create_index(op.f("ix_delivery_attempt_delivery_id"), "delivery_attempt", ["delivery_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_attempt_delivery_id"), table_name="delivery_attempt")
    op.drop_table("delivery_attempt")
    op.drop_index(op.f("ix_delivery_ticket_id"), table_name="delivery")
    op.drop_index("ix_delivery_subscriber", table_name="delivery")
    op.drop_index("ix_delivery_list", table_name="delivery")
    op.drop_index("ix_delivery_due", table_name="delivery")
    op.drop_table("delivery")
    op.drop_table("webhook_subscriber")
