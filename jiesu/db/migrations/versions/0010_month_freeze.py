"""published months: an assessment month's figures frozen at its cut-off; satisfaction counted
per level (scores applied when read); the first contact's due kept while it is pending

The facts and rollups lose `satisfaction_points` (score × 1000, stale as soon as the pack's scores
change) and gain one count per satisfaction level; `metric_fact.contact_due` holds the first
contact's due while it is still to be made. The new counts start at 0: run
`jiesu metrics rebuild` after upgrading (the facts are derived from the events).
`month_freeze` / `frozen_fact` keep a month's figures as published at its cut-off.

Revision ID: 0010_month_freeze
Revises: 0009_text_search
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_month_freeze"
down_revision: str | None = "0009_text_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEVELS = ("very_satisfied", "satisfied", "basically_satisfied", "dissatisfied",
          "very_dissatisfied")  # fmt: skip
# The counters of metric_fact in 0008's order, with the satisfaction levels instead of points.
COUNTERS = (
    "led", "counted", "accepted_on_time", "responded", "replied", "replied_on_time",
    "replied_late", "extended", "return_requested", "return_approved", "return_rejected",
    "escalated_away", "exempted", "reopened", "audited", "callbacks", "evaluated", "solved",
    "satisfied_n", *(f"level_{x}" for x in LEVELS), "dissatisfied", "urged", "supervised",
    "handling_seconds", "received", "answered", "transferred", "rejected", "merged",
    "dispatched", "misdispatched",
)  # fmt: skip


def upgrade() -> None:
    for table, kind in (("metric_fact", sa.Integer()), ("metric_rollup", sa.BigInteger())):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("satisfaction_points")
            for level in LEVELS:
                batch_op.add_column(
                    sa.Column(f"level_{level}", kind, nullable=False, server_default="0")
                )
    with op.batch_alter_table("metric_fact", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contact_due", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_metric_fact_contact_due", ["contact_due"], unique=False)

    op.create_table(
        "month_freeze",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "settings", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_month_freeze")),
    )
    op.create_table(
        "frozen_fact",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("overdue_open", sa.Integer(), nullable=False),
        sa.Column("contact_pending", sa.Integer(), nullable=False),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in COUNTERS),
        sa.ForeignKeyConstraint(
            ["period"],
            ["month_freeze.period"],
            name=op.f("fk_frozen_fact_period_month_freeze"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_frozen_fact_ticket_id_ticket")
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"], name=op.f("fk_frozen_fact_unit_id_unit")),
        sa.PrimaryKeyConstraint("period", "ticket_id", "unit_id", name=op.f("pk_frozen_fact")),
    )
    with op.batch_alter_table("frozen_fact", schema=None) as batch_op:
        batch_op.create_index("ix_frozen_fact_period_unit", ["period", "unit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("frozen_fact", schema=None) as batch_op:
        batch_op.drop_index("ix_frozen_fact_period_unit")
    op.drop_table("frozen_fact")
    op.drop_table("month_freeze")
    with op.batch_alter_table("metric_fact", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_fact_contact_due")
        batch_op.drop_column("contact_due")
    for table, kind in (("metric_fact", sa.Integer()), ("metric_rollup", sa.BigInteger())):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for level in LEVELS:
                batch_op.drop_column(f"level_{level}")
            batch_op.add_column(
                sa.Column("satisfaction_points", kind, nullable=False, server_default="0")
            )
