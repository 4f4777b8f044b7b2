"""The schema comes from Alembic migrations that go up and down cleanly and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import jiesu.db.models  # noqa: F401  (registers every table on Base.metadata)
from jiesu.db.base import Base
from jiesu.db.engine import make_engine
from jiesu.db.migrate import downgrade, is_initialised, upgrade
from jiesu.knowledge.search import is_index_table
from jiesu.tickets.models import TEXT_INDEX

MODEL_TABLES = set(Base.metadata.tables)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        # The knowledge search index (migration 0021: FTS5 or tsvector) is not on the models.
        return {t for t in inspect(engine).get_table_names() if not is_index_table(t)}
    finally:
        engine.dispose()


def test_the_models_declare_the_core_tables() -> None:
    assert {
        "unit",
        "app_user",
        "api_token",
        "category",
        "request_type",
        "dispatch_rule",
        "city_setting",
        "calendar_override",
        "ticket",
        "assignment",
        "event",
        "ticket_counter",
        "idempotency_key",
    } <= MODEL_TABLES


def test_upgrade_then_downgrade_then_upgrade_again(bare_url: str) -> None:
    assert _tables(bare_url) == set()

    upgrade(bare_url)
    assert _tables(bare_url) == MODEL_TABLES | {"alembic_version"}

    downgrade(bare_url, "base")
    assert _tables(bare_url) - {"alembic_version"} == set(), "base drops every table"

    upgrade(bare_url)
    assert _tables(bare_url) == MODEL_TABLES | {"alembic_version"}


def test_upgrade_marks_the_database_initialised(bare_url: str) -> None:
    engine = make_engine(bare_url)
    try:
        assert not is_initialised(engine)
        upgrade(bare_url)
        assert is_initialised(engine)
    finally:
        engine.dispose()


def test_upgrading_an_up_to_date_database_is_harmless(bare_url: str) -> None:
    upgrade(bare_url)
    upgrade(bare_url)
    assert _tables(bare_url) == MODEL_TABLES | {"alembic_version"}


def test_models_match_the_migrations(bare_url: str) -> None:
    upgrade(bare_url)
    engine = make_engine(bare_url)
    try:
        with engine.connect() as conn:
            # The text-search index is PostgreSQL's only, on a function the migration defines,
            # and not declared on the model (tickets/models.TEXT_INDEX).
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_object": lambda obj, name, kind, reflected, other: (
                        name != TEXT_INDEX and not is_index_table(str(name))
                    ),
                },
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"
