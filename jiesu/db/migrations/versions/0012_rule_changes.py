"""rule changes (calendar, tiers) propagate: a job may belong to no ticket

A change of the working-day calendar or of a tier's limits that affects many orders is queued
as one `rules` job (jiesu/tickets/rule_changes.py) that the worker works through in batches;
it names the change, not a ticket, so `job.ticket_id` becomes nullable.

Revision ID: 0012_rule_changes
Revises: 0011_rate_limits
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_rule_changes"
down_revision: str | None = "0011_rate_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.alter_column("ticket_id", existing_type=BIG, nullable=True)


def downgrade() -> None:
    # Jobs without a ticket cannot stay; outbox rows never point at them (rules jobs send
    # nothing).
    op.execute("DELETE FROM job WHERE ticket_id IS NULL")
    with op.batch_alter_table("job") as batch:
        batch.alter_column("ticket_id", existing_type=BIG, nullable=False)
