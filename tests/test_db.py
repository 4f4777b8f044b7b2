"""Storage guarantees on both backends: aware UTC times, append-only events, optimistic locking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm.exc import StaleDataError

from jiesu.auth.models import ApiToken
from jiesu.db.engine import Database
from jiesu.org.models import User
from jiesu.tickets.models import Event, Ticket

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 1, 1, 23, 30, 15, 123456, tzinfo=SHANGHAI)  # = 2026-01-01 15:30:15 UTC


def agent_id(db: Database) -> int:
    with db.read() as s:
        uid = s.scalar(select(User.id).where(User.username == "agent1"))
    assert uid is not None
    return uid


def store_token(db: Database, created_at: datetime, digest: str = "a" * 64) -> int:
    with db.write() as s:
        token = ApiToken(user_id=agent_id(db), token_hash=digest, created_at=created_at)
        s.add(token)
        s.flush()
        return token.id


def make_ticket(db: Database) -> int:
    """A received ticket with its first event, written straight through the ORM."""
    with db.write() as s:
        ticket = Ticket(
            number="2026010100001",
            channel="phone",
            title="路灯不亮",
            content="路灯不亮",
            status="received",
        )
        s.add(ticket)
        s.flush()
        s.add(
            Event(
                ticket_id=ticket.id,
                seq=1,
                action="receive",
                state_after="received",
                data={"channel": "phone"},
            )
        )
        return ticket.id


# ---- UTCDateTime ---------------------------------------------------------------------------


def test_an_aware_city_time_reads_back_as_the_same_instant_in_utc(db: Database) -> None:
    token_id = store_token(db, AT)
    with db.read() as s:
        back = s.get(ApiToken, token_id)
        assert back is not None
        value = back.created_at
    assert value == AT  # the same instant
    assert value.tzinfo is UTC
    assert value == datetime(2026, 1, 1, 15, 30, 15, 123456, tzinfo=UTC)
    assert value.microsecond == 123456


def test_times_are_stored_in_utc(db: Database) -> None:
    store_token(db, AT)
    with db.read() as s:
        raw = s.execute(text("SELECT created_at FROM api_token")).scalar_one()
    if db.dialect == "sqlite":
        assert str(raw).startswith("2026-01-01 15:30:15.123456")
    else:
        assert raw.utcoffset() is not None
        assert raw.astimezone(UTC).replace(tzinfo=None) == datetime(2026, 1, 1, 15, 30, 15, 123456)


def test_aware_times_compare_correctly_in_queries(db: Database) -> None:
    store_token(db, AT)
    just_before = (AT - timedelta(microseconds=1)).astimezone(ZoneInfo("America/New_York"))
    with db.read() as s:
        assert s.scalar(select(ApiToken.id).where(ApiToken.created_at > just_before)) is not None
        assert s.scalar(select(ApiToken.id).where(ApiToken.created_at > AT)) is None


def test_a_naive_datetime_is_refused_on_write(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        store_token(db, datetime(2026, 1, 1, 12, 0))
    with db.read() as s:
        assert s.scalar(select(ApiToken.id)) is None


def test_a_naive_datetime_is_refused_in_a_query(db: Database) -> None:
    with db.read() as s, pytest.raises(StatementError, match="naive datetime"):
        s.scalar(select(ApiToken.id).where(ApiToken.created_at > datetime(2026, 1, 1)))


# ---- events are append-only ----------------------------------------------------------------


def test_an_event_cannot_be_updated_through_the_orm(db: Database) -> None:
    ticket_id = make_ticket(db)
    with pytest.raises(PermissionError, match="append-only"), db.write() as s:
        event = s.scalar(select(Event).where(Event.ticket_id == ticket_id))
        assert event is not None
        event.note = "改写历史"
    with db.read() as s:
        assert s.scalar(select(Event.note).where(Event.ticket_id == ticket_id)) is None


def test_an_event_cannot_be_deleted_through_the_orm(db: Database) -> None:
    ticket_id = make_ticket(db)
    with pytest.raises(PermissionError, match="append-only"), db.write() as s:
        event = s.scalar(select(Event).where(Event.ticket_id == ticket_id))
        assert event is not None
        s.delete(event)
    with db.read() as s:
        assert s.scalar(select(Event.action).where(Event.ticket_id == ticket_id)) == "receive"


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE event SET note = 'rewritten' WHERE ticket_id = :t",
        "DELETE FROM event WHERE ticket_id = :t",
    ],
)
def test_the_database_itself_refuses_to_rewrite_an_event(db: Database, sql: str) -> None:
    """Raw SQL, a Core update or another program: the trigger holds where the ORM hook cannot."""
    ticket_id = make_ticket(db)
    with pytest.raises(DBAPIError, match="append-only"), db.write() as s:
        s.execute(text(sql), {"t": ticket_id})
    with db.read() as s:
        assert s.scalar(select(Event.note).where(Event.ticket_id == ticket_id)) is None


def test_appending_a_second_event_is_fine(db: Database) -> None:
    ticket_id = make_ticket(db)
    with db.write() as s:
        s.add(
            Event(
                ticket_id=ticket_id,
                seq=2,
                action="answer",
                state_before="received",
                state_after="answered",
            )
        )
    with db.read() as s:
        assert list(s.scalars(select(Event.seq).where(Event.ticket_id == ticket_id))) == [1, 2]


# ---- optimistic locking --------------------------------------------------------------------


def test_the_second_of_two_concurrent_changes_to_a_ticket_fails(db: Database) -> None:
    ticket_id = make_ticket(db)
    first, second = db.sessions(), db.sessions()
    try:
        mine = first.get(Ticket, ticket_id)
        theirs = second.get(Ticket, ticket_id)
        assert mine is not None and theirs is not None
        assert mine.version == theirs.version == 1
        # End the second reader's transaction but keep what it loaded (expire_on_commit is
        # off): on SQLite an open read snapshot could not be upgraded to a write later anyway.
        second.commit()
        mine.title = "第一人的修改"
        first.commit()
        theirs.title = "第二人的修改"
        with pytest.raises(StaleDataError):
            second.commit()
        second.rollback()
    finally:
        first.close()
        second.close()
    with db.read() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        assert (ticket.title, ticket.version) == ("第一人的修改", 2)


def test_every_change_bumps_the_version(db: Database) -> None:
    ticket_id = make_ticket(db)
    for title in ("一", "二", "三"):
        with db.write() as s:
            ticket = s.get(Ticket, ticket_id)
            assert ticket is not None
            ticket.title = title
    with db.read() as s:
        assert s.scalar(select(Ticket.version).where(Ticket.id == ticket_id)) == 4
