"""SMS and email notices (issue 15): opt-outs, units' email addresses

Revision ID: 0015_notices
Revises: 0014_delivery
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015_notices"
down_revision: str | None = "0014_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sms_opt_out",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["app_user.id"], name=op.f("fk_sms_opt_out_created_by_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_opt_out")),
        sa.UniqueConstraint("phone", name=op.f("uq_sms_opt_out_phone")),
    )
    op.create_table(
        "unit_notice_email",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("kinds", Json, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["unit.id"], name=op.f("fk_unit_notice_email_unit_id_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unit_notice_email")),
        sa.UniqueConstraint(
            "unit_id", "address", name=op.f("uq_unit_notice_email_unit_id_address")
        ),
    )
    with op.batch_alter_table("unit_notice_email") as batch:
        batch.create_index(batch.f("ix_unit_notice_email_unit_id"), ["unit_id"])


def downgrade() -> None:
    with op.batch_alter_table("unit_notice_email") as batch:
        batch.drop_index(batch.f("ix_unit_notice_email_unit_id"))
    op.drop_table("unit_notice_email")
    op.drop_table("sms_opt_out")
