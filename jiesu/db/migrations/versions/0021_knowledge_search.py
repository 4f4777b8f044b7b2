"""knowledge search index (issue 16)

The knowledge base's search index (`jiesu/knowledge/search.py`), one per database, both holding
the answering version's terms as `knowledge/text.py` makes them (space-separated, per field):

- SQLite: the FTS5 table `kb_search_fts` (title, question, keyword, answer; `unicode61` over the
  prepared terms, ranked with `bm25()` and column weights), rowid = the entry's id;
- PostgreSQL: the table `kb_search` with a `tsvector` (one weight per field: A title, B question,
  C keyword, D answer) and its GIN index, ranked with `ts_rank`; the version's validity is
  kept beside it, so that the ranking reads no other table (the planner, misled by the
  tsquery's selectivity, read all of `kb_entry` for the join: 13 ms at 50,000 entries).

Both have `kb_search_term`: each term's document frequency (the row '' counts the entries), which
picks the query's specific terms and weighs them (idf) alike on both databases. None of these
tables is declared on the models (tests/test_migrations.py leaves out the `kb_search` names).

Revision ID: 0021_knowledge_search
Revises: 0020_knowledge
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021_knowledge_search"
down_revision: str | None = "0020_knowledge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE TABLE kb_search_term (term VARCHAR(64) PRIMARY KEY, df INTEGER NOT NULL)")
    op.execute("INSERT INTO kb_search_term (term, df) VALUES ('', 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TABLE kb_search (entry_id BIGINT PRIMARY KEY, version INTEGER NOT NULL, "
            "tsv TSVECTOR NOT NULL, title TEXT NOT NULL, question TEXT NOT NULL, "
            "keyword TEXT NOT NULL, answer TEXT NOT NULL, texts TEXT NOT NULL, "
            "valid_from DATE, valid_to DATE)"
        )
        op.execute("CREATE INDEX ix_kb_search_tsv ON kb_search USING gin (tsv)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE kb_search_fts USING fts5(title, question, keyword, answer, "
            "texts UNINDEXED, version UNINDEXED, tokenize = 'unicode61 remove_diacritics 0')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE kb_search")
    else:
        op.execute("DROP TABLE kb_search_fts")
    op.execute("DROP TABLE kb_search_term")
