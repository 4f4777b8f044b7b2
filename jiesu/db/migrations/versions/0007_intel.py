"""intel: the classifier registry (versions, evaluation, the active one), the advice given at
intake, and an index for same-event candidates by category

Revision ID: 0007_intel
Revises: 0006_places
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_intel"
down_revision: str | None = "0006_places"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BYTES = sa.LargeBinary().with_variant(postgresql.BYTEA(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "intel_model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("evaluation", JSON, nullable=False),
        sa.Column("meta", JSON, nullable=False),
        sa.Column("artifact", BYTES, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["app_user.id"], name=op.f("fk_intel_model_created_by_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intel_model")),
        sa.UniqueConstraint("kind", "version", name=op.f("uq_intel_model_kind_version")),
    )
    op.create_table(
        "intake_advice",
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("advice", JSON, nullable=False),
        sa.Column("category_model_id", sa.Integer(), nullable=True),
        sa.Column("auto_dispatched", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_intake_advice_ticket_id_ticket")
        ),
        sa.ForeignKeyConstraint(
            ["category_model_id"],
            ["intel_model.id"],
            name=op.f("fk_intake_advice_category_model_id_intel_model"),
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_intake_advice")),
    )
    op.create_index("ix_ticket_category_created", "ticket", ["category_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_ticket_category_created", table_name="ticket")
    op.drop_table("intake_advice")
    op.drop_table("intel_model")
