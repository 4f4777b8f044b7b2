"""knowledge base (issue 16): entries, versions, uses, flags, suggestions

Revision ID: 0020_knowledge
Revises: 0019_imports
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020_knowledge"
down_revision: str | None = "0019_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "kb_entry",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("owner_unit_id", sa.Integer(), nullable=False),
        sa.Column("category_code", sa.String(length=20), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column(
            "published_version_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "pending_version_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("use_count", sa.Integer(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("open_flags", sa.Integer(), nullable=False),
        sa.Column("expiry_warned_for", sa.Date(), nullable=True),
        sa.Column("demo", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["app_user.id"], name=op.f("fk_kb_entry_created_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["owner_unit_id"], ["unit.id"], name=op.f("fk_kb_entry_owner_unit_id_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_entry")),
        sa.UniqueConstraint("code", name=op.f("uq_kb_entry_code")),
    )
    with op.batch_alter_table("kb_entry", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_kb_entry_category_code"), ["category_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_kb_entry_owner_unit_id"), ["owner_unit_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_kb_entry_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_kb_entry_valid_to"), ["valid_to"], unique=False)

    op.create_table(
        "kb_flag",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("reason", sa.String(length=12), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("raised_by_id", sa.Integer(), nullable=True),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_by_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_note", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entry.id"], name=op.f("fk_kb_flag_entry_id_kb_entry")
        ),
        sa.ForeignKeyConstraint(
            ["raised_by_id"], ["app_user.id"], name=op.f("fk_kb_flag_raised_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_id"], ["app_user.id"], name=op.f("fk_kb_flag_resolved_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_kb_flag_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_flag")),
    )
    with op.batch_alter_table("kb_flag", schema=None) as batch_op:
        batch_op.create_index("ix_kb_flag_entry_status", ["entry_id", "status"], unique=False)

    op.create_table(
        "kb_suggestion",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("owner_unit_id", sa.Integer(), nullable=True),
        sa.Column("category_code", sa.String(length=20), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column(
            "terms", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "samples", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "ticket_ids", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("answered_without", sa.Integer(), nullable=False),
        sa.Column("dispatched", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "extra", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["app_user.id"], name=op.f("fk_kb_suggestion_decided_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entry.id"], name=op.f("fk_kb_suggestion_entry_id_kb_entry")
        ),
        sa.ForeignKeyConstraint(
            ["owner_unit_id"], ["unit.id"], name=op.f("fk_kb_suggestion_owner_unit_id_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_suggestion")),
        sa.UniqueConstraint("key", name=op.f("uq_kb_suggestion_key")),
    )
    with op.batch_alter_table("kb_suggestion", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_kb_suggestion_owner_unit_id"), ["owner_unit_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_kb_suggestion_status"), ["status"], unique=False)

    op.create_table(
        "kb_use",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entry.id"], name=op.f("fk_kb_use_entry_id_kb_entry")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_kb_use_ticket_id_ticket")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_kb_use_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_use")),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_kb_use_ticket_id")),
    )
    with op.batch_alter_table("kb_use", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_use_entry_id"), ["entry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_kb_use_used_at"), ["used_at"], unique=False)

    op.create_table(
        "kb_version",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("category_code", sa.String(length=20), nullable=True),
        sa.Column("owner_unit_id", sa.Integer(), nullable=False),
        sa.Column(
            "keywords", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "questions", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("source", sa.String(length=300), nullable=True),
        sa.Column("link", sa.String(length=500), nullable=True),
        sa.Column("change_note", sa.String(length=500), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by_id", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.String(length=500), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"], ["app_user.id"], name=op.f("fk_kb_version_author_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entry.id"], name=op.f("fk_kb_version_entry_id_kb_entry")
        ),
        sa.ForeignKeyConstraint(
            ["owner_unit_id"], ["unit.id"], name=op.f("fk_kb_version_owner_unit_id_unit")
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by_id"], ["app_user.id"], name=op.f("fk_kb_version_reviewed_by_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_version")),
        sa.UniqueConstraint("entry_id", "number", name=op.f("uq_kb_version_entry_id_number")),
    )
    with op.batch_alter_table("kb_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_version_entry_id"), ["entry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_kb_version_state"), ["state"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("kb_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_version_state"))
        batch_op.drop_index(batch_op.f("ix_kb_version_entry_id"))

    op.drop_table("kb_version")
    with op.batch_alter_table("kb_use", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_use_used_at"))
        batch_op.drop_index(batch_op.f("ix_kb_use_entry_id"))

    op.drop_table("kb_use")
    with op.batch_alter_table("kb_suggestion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_suggestion_status"))
        batch_op.drop_index(batch_op.f("ix_kb_suggestion_owner_unit_id"))

    op.drop_table("kb_suggestion")
    with op.batch_alter_table("kb_flag", schema=None) as batch_op:
        batch_op.drop_index("ix_kb_flag_entry_status")

    op.drop_table("kb_flag")
    with op.batch_alter_table("kb_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_entry_valid_to"))
        batch_op.drop_index(batch_op.f("ix_kb_entry_status"))
        batch_op.drop_index(batch_op.f("ix_kb_entry_owner_unit_id"))
        batch_op.drop_index(batch_op.f("ix_kb_entry_category_code"))

    op.drop_table("kb_entry")
