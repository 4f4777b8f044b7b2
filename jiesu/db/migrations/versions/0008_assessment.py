"""assessment: per-order facts and per-unit/day rollups of the three rates, intake counts per
day, early warnings, links of proactive tasks to their orders, and the built reports

Revision ID: 0008_assessment
Revises: 0007_intel
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_assessment"
down_revision: str | None = "0007_intel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intake_rollup",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("dim", sa.String(length=12), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_rollup")),
        sa.UniqueConstraint("day", "district_id", "dim", "key", name="uq_intake_rollup"),
    )
    with op.batch_alter_table("intake_rollup", schema=None) as batch_op:
        batch_op.create_index("ix_intake_rollup_dim_day", ["dim", "day"], unique=False)

    op.create_table(
        "metric_rollup",
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("led", sa.BigInteger(), nullable=False),
        sa.Column("counted", sa.BigInteger(), nullable=False),
        sa.Column("accepted_on_time", sa.BigInteger(), nullable=False),
        sa.Column("responded", sa.BigInteger(), nullable=False),
        sa.Column("replied", sa.BigInteger(), nullable=False),
        sa.Column("replied_on_time", sa.BigInteger(), nullable=False),
        sa.Column("replied_late", sa.BigInteger(), nullable=False),
        sa.Column("extended", sa.BigInteger(), nullable=False),
        sa.Column("return_requested", sa.BigInteger(), nullable=False),
        sa.Column("return_approved", sa.BigInteger(), nullable=False),
        sa.Column("return_rejected", sa.BigInteger(), nullable=False),
        sa.Column("escalated_away", sa.BigInteger(), nullable=False),
        sa.Column("exempted", sa.BigInteger(), nullable=False),
        sa.Column("reopened", sa.BigInteger(), nullable=False),
        sa.Column("audited", sa.BigInteger(), nullable=False),
        sa.Column("callbacks", sa.BigInteger(), nullable=False),
        sa.Column("evaluated", sa.BigInteger(), nullable=False),
        sa.Column("solved", sa.BigInteger(), nullable=False),
        sa.Column("satisfied_n", sa.BigInteger(), nullable=False),
        sa.Column("satisfaction_points", sa.BigInteger(), nullable=False),
        sa.Column("dissatisfied", sa.BigInteger(), nullable=False),
        sa.Column("urged", sa.BigInteger(), nullable=False),
        sa.Column("supervised", sa.BigInteger(), nullable=False),
        sa.Column("handling_seconds", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("answered", sa.BigInteger(), nullable=False),
        sa.Column("transferred", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("merged", sa.BigInteger(), nullable=False),
        sa.Column("dispatched", sa.BigInteger(), nullable=False),
        sa.Column("misdispatched", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["unit.id"], name=op.f("fk_metric_rollup_unit_id_unit")
        ),
        sa.PrimaryKeyConstraint("unit_id", "day", name=op.f("pk_metric_rollup")),
    )
    with op.batch_alter_table("metric_rollup", schema=None) as batch_op:
        batch_op.create_index("ix_metric_rollup_day", ["day"], unique=False)

    op.create_table(
        "report",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("period", sa.String(length=12), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column(
            "pdf", sa.LargeBinary().with_variant(postgresql.BYTEA(), "postgresql"), nullable=False
        ),
        sa.Column(
            "xlsx", sa.LargeBinary().with_variant(postgresql.BYTEA(), "postgresql"), nullable=False
        ),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["app_user.id"], name=op.f("fk_report_created_by_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report")),
        sa.UniqueConstraint("kind", "period", name=op.f("uq_report_kind_period")),
    )
    op.create_table(
        "intake_fact",
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column(
            "keys",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_intake_fact_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_intake_fact")),
    )
    op.create_table(
        "metric_fact",
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("led", sa.Integer(), nullable=False),
        sa.Column("counted", sa.Integer(), nullable=False),
        sa.Column("accepted_on_time", sa.Integer(), nullable=False),
        sa.Column("responded", sa.Integer(), nullable=False),
        sa.Column("replied", sa.Integer(), nullable=False),
        sa.Column("replied_on_time", sa.Integer(), nullable=False),
        sa.Column("replied_late", sa.Integer(), nullable=False),
        sa.Column("extended", sa.Integer(), nullable=False),
        sa.Column("return_requested", sa.Integer(), nullable=False),
        sa.Column("return_approved", sa.Integer(), nullable=False),
        sa.Column("return_rejected", sa.Integer(), nullable=False),
        sa.Column("escalated_away", sa.Integer(), nullable=False),
        sa.Column("exempted", sa.Integer(), nullable=False),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("audited", sa.Integer(), nullable=False),
        sa.Column("callbacks", sa.Integer(), nullable=False),
        sa.Column("evaluated", sa.Integer(), nullable=False),
        sa.Column("solved", sa.Integer(), nullable=False),
        sa.Column("satisfied_n", sa.Integer(), nullable=False),
        sa.Column("satisfaction_points", sa.Integer(), nullable=False),
        sa.Column("dissatisfied", sa.Integer(), nullable=False),
        sa.Column("urged", sa.Integer(), nullable=False),
        sa.Column("supervised", sa.Integer(), nullable=False),
        sa.Column("handling_seconds", sa.Integer(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("transferred", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("merged", sa.Integer(), nullable=False),
        sa.Column("dispatched", sa.Integer(), nullable=False),
        sa.Column("misdispatched", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_metric_fact_ticket_id_ticket")
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"], name=op.f("fk_metric_fact_unit_id_unit")),
        sa.PrimaryKeyConstraint("ticket_id", "unit_id", name=op.f("pk_metric_fact")),
    )
    with op.batch_alter_table("metric_fact", schema=None) as batch_op:
        batch_op.create_index("ix_metric_fact_unit_day", ["unit_id", "day"], unique=False)

    op.create_table(
        "ticket_link",
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "linked_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["app_user.id"], name=op.f("fk_ticket_link_created_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["linked_id"], ["ticket.id"], name=op.f("fk_ticket_link_linked_id_ticket")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_ticket_link_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("ticket_id", "linked_id", name=op.f("pk_ticket_link")),
    )
    with op.batch_alter_table("ticket_link", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_link_linked", ["linked_id"], unique=False)

    op.create_table(
        "warning",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("area_unit_id", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("category_code", sa.String(length=20), nullable=True),
        sa.Column(
            "figures",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "evidence",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column(
            "task_ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("handled_by_id", sa.Integer(), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["area_unit_id"], ["unit.id"], name=op.f("fk_warning_area_unit_id_unit")
        ),
        sa.ForeignKeyConstraint(
            ["handled_by_id"], ["app_user.id"], name=op.f("fk_warning_handled_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["task_ticket_id"], ["ticket.id"], name=op.f("fk_warning_task_ticket_id_ticket")
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["unit.id"], name=op.f("fk_warning_unit_id_unit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warning")),
        sa.UniqueConstraint("key", name=op.f("uq_warning_key")),
    )
    with op.batch_alter_table("warning", schema=None) as batch_op:
        batch_op.create_index("ix_warning_status_day", ["status", "day"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("warning", schema=None) as batch_op:
        batch_op.drop_index("ix_warning_status_day")

    op.drop_table("warning")
    with op.batch_alter_table("ticket_link", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_link_linked")

    op.drop_table("ticket_link")
    with op.batch_alter_table("metric_fact", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_fact_unit_day")

    op.drop_table("metric_fact")
    op.drop_table("intake_fact")
    op.drop_table("report")
    with op.batch_alter_table("metric_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_rollup_day")

    op.drop_table("metric_rollup")
    with op.batch_alter_table("intake_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_intake_rollup_dim_day")

    op.drop_table("intake_rollup")
