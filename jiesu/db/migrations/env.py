"""Alembic environment: the URL comes from the config jiesu.db.migrate builds."""

from __future__ import annotations

from alembic import context

import jiesu.db.models  # noqa: F401  (registers every table)
from jiesu.db.base import Base
from jiesu.db.engine import make_engine

config = context.config


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
