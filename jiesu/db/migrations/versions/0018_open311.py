"""Open311 GeoReport v2 (issue 15): api keys, service request ids

Revision ID: 0018_open311
Revises: 0017_calls
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018_open311"
down_revision: str | None = "0017_calls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "open311_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=12), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_open311_key_user_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["app_user.id"], name=op.f("fk_open311_key_created_by_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open311_key")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_open311_key_key_hash")),
    )
    op.create_index("ix_open311_key_user_id", "open311_key", ["user_id"])
    op.create_table(
        "open311_request",
        sa.Column("ticket_id", BIG, nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=40), nullable=False),
        sa.Column("address_id", sa.String(length=100), nullable=True),
        sa.Column("media_url", sa.String(length=500), nullable=True),
        sa.Column("device_id", sa.String(length=100), nullable=True),
        sa.Column("account_id", sa.String(length=100), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_open311_request_ticket_id_ticket")
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["open311_key.id"], name=op.f("fk_open311_request_key_id_open311_key")
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_open311_request")),
        sa.UniqueConstraint("token", name=op.f("uq_open311_request_token")),
    )
    op.create_index("ix_open311_request_key_id", "open311_request", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_open311_request_key_id", table_name="open311_request")
    op.drop_table("open311_request")
    op.drop_index("ix_open311_key_user_id", table_name="open311_key")
    op.drop_table("open311_key")
