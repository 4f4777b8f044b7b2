"""Ticket numbers (工单编号): the city-local date YYYYMMDD and a daily sequence, 2026112200017.

The sequence is one row per day bumped by a single atomic `INSERT … ON CONFLICT DO UPDATE …
RETURNING` inside the creating transaction: on PostgreSQL the row lock serialises concurrent
creators until commit, on SQLite the database write lock does; a rolled-back create gives its
number back. Five digits cover 99,999 tickets a day; a busier day widens to six rather than
refusing a citizen.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from jiesu.tickets.models import TicketCounter


def format_number(day: date, seq: int) -> str:
    return f"{day:%Y%m%d}{seq:05d}"


def next_number(day: date, *, db_session: Session) -> str:
    dialect = db_session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    key = f"{day:%Y%m%d}"
    stmt = (
        insert(TicketCounter)
        .values(day=key, last=1)
        .on_conflict_do_update(
            index_elements=[TicketCounter.day], set_={"last": TicketCounter.last + 1}
        )
        .returning(TicketCounter.last)
    )
    seq = db_session.execute(stmt).scalar_one()
    return format_number(day, seq)
