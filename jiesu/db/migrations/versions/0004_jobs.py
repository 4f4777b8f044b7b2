"""job: durable timers for time-limit warnings; outbox rows may come from a job

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("id", BIG, nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("ticket_id", BIG, nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=True),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"], name=op.f("fk_job_ticket_id_ticket")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
        sa.UniqueConstraint("key", name=op.f("uq_job_key")),
    )
    op.create_index("ix_job_pending", "job", ["status", "run_at"])
    op.create_index(op.f("ix_job_ticket_id"), "job", ["ticket_id"])
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("event_id", existing_type=BIG, nullable=True)
        batch.add_column(sa.Column("job_id", BIG, nullable=True))
        batch.create_foreign_key(op.f("fk_outbox_job_id_job"), "job", ["job_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint(op.f("fk_outbox_job_id_job"), type_="foreignkey")
        batch.drop_column("job_id")
        batch.alter_column("event_id", existing_type=BIG, nullable=False)
    op.drop_index(op.f("ix_job_ticket_id"), table_name="job")
    op.drop_index("ix_job_pending", table_name="job")
    op.drop_table("job")
