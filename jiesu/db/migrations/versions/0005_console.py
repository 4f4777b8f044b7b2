"""console and portal: login lockout, scoped tokens, audit log, tracking codes, attachments

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("app_user") as batch:
        batch.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("api_token") as batch:
        batch.add_column(sa.Column("scope_channel", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("scope_role", sa.String(length=20), nullable=True))
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("tracking_hash", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", BIG, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=60), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("ticket_id", BIG, nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_audit_log_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_action_ip_at", "audit_log", ["action", "ip", "at"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_ticket_id"), "audit_log", ["ticket_id"])
    op.create_table(
        "attachment",
        sa.Column("id", BIG, nullable=False),
        sa.Column("ticket_id", BIG, nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=40), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_attachment_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachment")),
    )
    op.create_index(op.f("ix_attachment_ticket_id"), "attachment", ["ticket_id"])
    # Queues by state, soonest deadline first.
    op.create_index("ix_ticket_status_due", "ticket", ["status", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_ticket_status_due", table_name="ticket")
    op.drop_index(op.f("ix_attachment_ticket_id"), table_name="attachment")
    op.drop_table("attachment")
    op.drop_index(op.f("ix_audit_log_ticket_id"), table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_index("ix_audit_log_action_ip_at", table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("ticket") as batch:
        batch.drop_column("tracking_hash")
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("scope_role")
        batch.drop_column("scope_channel")
    with op.batch_alter_table("app_user") as batch:
        batch.drop_column("password_changed_at")
        batch.drop_column("locked_until")
        batch.drop_column("failed_logins")
