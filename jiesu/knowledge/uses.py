"""An order answered with a knowledge-base entry: the one door `tickets/` has into the base.

The `answer` action's `entry` field names an entry by its code; `tickets/actions.py` resolves it
here (`resolve_entry`: the version answering today, or a 422 on the field `entry`) and
`tickets/flows.py` records the use in the action's transaction (`record_use`: one `kb_use` row
per order, the entry's use count raised by an UPDATE … SET use_count = use_count + 1, so two
concurrent answers never lose one).

This module imports only the knowledge tables, the database layer, the errors and SQLAlchemy
(docs/architecture.md: tickets/ may import knowledge.uses only).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from jiesu.errors import Invalid
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeUse, KnowledgeVersion


def answers_on(status: str, valid_from: date | None, valid_to: date | None, today: date) -> bool:
    """Whether a published entry with this validity answers on `today` (city date): its first
    day and its last day (`valid_to`) included."""
    if status != "published":
        return False
    if valid_from is not None and today < valid_from:
        return False
    return valid_to is None or today <= valid_to


def resolve_entry(code: str, *, db_session: Session, today: date) -> tuple[int, int]:
    """(entry id, version number) of the version of entry `code` answering on `today`;
    Invalid on the field `entry` when there is no such entry or it does not answer today."""
    code = (code or "").strip()
    row = (
        db_session.execute(
            select(KnowledgeEntry, KnowledgeVersion.number)
            .join(KnowledgeVersion, KnowledgeVersion.id == KnowledgeEntry.published_version_id)
            .where(KnowledgeEntry.code == code)
        ).first()
        if code
        else None
    )
    if row is None:
        raise Invalid(f"知识库中没有已发布的条目「{code[:40]}」 / no published entry {code[:40]!r}",
                      field="entry")  # fmt: skip
    entry, number = row
    if not answers_on(entry.status, entry.valid_from, entry.valid_to, today):
        raise Invalid(
            f"知识库条目「{code}」当前不在有效期内或已下架，不能作为答复依据 / entry {code} does "
            "not answer today (expired, withdrawn or not yet valid)",
            field="entry",
        )
    return entry.id, int(number)


def record_use(
    entry_id: int,
    version_number: int,
    *,
    ticket_id: int,
    user_id: int | None,
    db_session: Session,
    now: datetime,
) -> None:
    """Count an order answered with the entry: once per order (a second call for the same
    order changes nothing), the entry's use count raised in the database itself."""
    values = {
        "entry_id": entry_id,
        "version_number": version_number,
        "ticket_id": ticket_id,
        "user_id": user_id,
        "used_at": now,
    }
    bind = db_session.get_bind()
    insert = pg_insert if bind.dialect.name == "postgresql" else sqlite_insert
    inserted = db_session.execute(
        insert(KnowledgeUse)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["ticket_id"])
        .returning(KnowledgeUse.id)
    ).first()
    if inserted is None:
        return  # this order's use is already counted
    db_session.execute(
        update(KnowledgeEntry)
        .where(KnowledgeEntry.id == entry_id)
        .values(use_count=KnowledgeEntry.use_count + 1, last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    loaded = db_session.identity_map.get(db_session.identity_key(KnowledgeEntry, entry_id))
    if loaded is not None:  # a copy in this session reads the new count when next used
        db_session.expire(loaded, ["use_count", "last_used_at"])
