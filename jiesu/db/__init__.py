"""Storage: the declarative base, engines and sessions for SQLite and PostgreSQL, migrations."""

from jiesu.db.base import Base, UTCDateTime, utcnow
from jiesu.db.engine import Database, make_engine

__all__ = ["Base", "Database", "UTCDateTime", "make_engine", "utcnow"]
