#!/usr/bin/env python3
"""The load bench's "minimal endpoint" baseline (issue 17 §2): what one insert costs without jiesu.

A FastAPI app with one `POST /tickets` that validates the same JSON body the intake takes and
inserts one row of a ticket's width (the same main columns and types as `ticket`, in its own
table `bench_ticket_row` of the same database) through SQLAlchemy + psycopg, with jiesu's pool
settings (`jiesu.db.engine.make_engine`). It is served exactly as `jiesu serve --workers 2` is:
the same supervisor, one SO_REUSEPORT socket per worker process, TCP_NODELAY
(`jiesu.web.serving`). So the ratio jiesu ÷ minimal measures what jiesu's intake does beyond
"parse a body, insert a row, answer" — not the web stack, the driver or the serving.

The raw PostgreSQL baseline (`raw_insert`) writes the same row with plain psycopg, one
`INSERT … ; COMMIT` per transaction, into `bench_raw_row`.

    BENCH_BASELINE_URL=postgresql+psycopg://… python bench/load_baseline.py --port 21234
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel, ConfigDict, Field  # noqa: E402
from sqlalchemy import (  # noqa: E402
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    text,
)

APP = "load_baseline:app"
URL_ENV = "BENCH_BASELINE_URL"
metadata = MetaData()


def ticket_width_table(name: str) -> Table:
    """A table with `ticket`'s main columns and types (jiesu/tickets/models.py), its unique
    number and its indexes on phone and creation time, without the foreign keys."""
    return Table(
        name,
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("number", String(16), unique=True, nullable=False),
        Column("channel", String(20), nullable=False),
        Column("request_type", String(20)),
        Column("category_id", Integer),
        Column("title", String(200), nullable=False),
        Column("content", Text, nullable=False),
        Column("requester_name", String(60)),
        Column("requester_phone", String(20), index=True),
        Column("requester_confidential", Boolean, nullable=False),
        Column("address", String(300)),
        Column("lat", Float),
        Column("lng", Float),
        Column("district_id", Integer),
        Column("street_id", Integer),
        Column("status", String(20), nullable=False),
        Column("tier", String(8)),
        Column("urgent", Boolean, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, index=True),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("due_at", DateTime(timezone=True)),
        Column("version", Integer, nullable=False),
    )


ENDPOINT_TABLE = ticket_width_table("bench_ticket_row")
RAW_TABLE = ticket_width_table("bench_raw_row")


def create_tables(url: str) -> None:
    """Both baseline tables, empty (dropped first when a kept database is measured again)."""
    from jiesu.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as c:
            for table in (ENDPOINT_TABLE, RAW_TABLE):
                c.execute(text(f"DROP TABLE IF EXISTS {table.name}"))
        metadata.create_all(engine)
    finally:
        engine.dispose()


class Requester(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=60)
    phone: str | None = Field(None, max_length=30)
    confidential: bool = False


class Body(BaseModel):
    """The intake's body as the bench sends it (a subset of `TicketCreate`, same limits)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    channel: str = Field(max_length=20)
    content: str = Field(min_length=1, max_length=5_000)
    title: str | None = Field(None, max_length=200)
    request_type: str | None = Field(None, max_length=20)
    category_code: str | None = Field(None, max_length=20)
    address: str | None = Field(None, max_length=300)
    requester: Requester = Field(default_factory=Requester)


def row_of(body: Body, now: datetime) -> dict[str, Any]:
    """The row a ticket would be (its number random: no counter, that is jiesu's own cost)."""
    return {
        "number": now.strftime("%Y%m%d") + secrets.token_hex(4),
        "channel": body.channel,
        "request_type": body.request_type,
        "category_id": None,
        "title": body.title or body.content[:30],
        "content": body.content,
        "requester_name": body.requester.name,
        "requester_phone": body.requester.phone,
        "requester_confidential": body.requester.confidential,
        "address": body.address,
        "lat": None,
        "lng": None,
        "district_id": None,
        "street_id": None,
        "status": "received",
        "tier": None,
        "urgent": False,
        "created_at": now,
        "updated_at": now,
        "due_at": now + timedelta(days=15),
        "version": 1,
    }


def make_app(engine: Engine) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    stmt = insert(ENDPOINT_TABLE).returning(ENDPOINT_TABLE.c.id, ENDPOINT_TABLE.c.number)

    # A plain `def`, as jiesu's intake is: FastAPI runs it on the thread pool.
    @app.post("/tickets", status_code=201)
    def create(body: Body) -> dict[str, Any]:
        with engine.begin() as c:
            row = c.execute(stmt, row_of(body, datetime.now(UTC))).one()
        return {"id": row.id, "number": row.number, "status": "received"}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _app_from_env() -> Any:
    from jiesu.db.engine import make_engine

    url = os.environ.get(URL_ENV)
    if not url:
        return None  # imported by load.py for its tables, not served
    return make_app(make_engine(url))


app = _app_from_env()


def raw_insert_sql() -> str:
    cols = [c.name for c in RAW_TABLE.columns if c.name != "id"]
    return (
        f"INSERT INTO {RAW_TABLE.name} ({', '.join(cols)}) "
        f"VALUES ({', '.join(f'%({c})s' for c in cols)})"
    )


def serve(port: int, workers: int) -> int:
    """`jiesu serve --workers N`'s way: the same supervisor and sockets, another app."""
    import uvicorn

    from jiesu.web.serving import Supervisor, listening_sockets, log_config, uvicorn_options

    # The worker processes import APP by name: this folder on their path.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p
        for p in (str(Path(__file__).resolve().parent), str(ROOT), os.environ.get("PYTHONPATH"))
        if p
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sockets = listening_sockets("127.0.0.1", port, workers)
    # jiesu serve's logging (access lines included) and forwarding options: the same server.
    config = uvicorn.Config(
        APP, host="127.0.0.1", port=port, workers=workers, log_level="info",
        log_config=log_config(), **uvicorn_options(()),
    )  # fmt: skip
    try:
        return Supervisor(config, sockets).run()
    finally:
        for sock in sockets:
            sock.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not os.environ.get(URL_ENV):
        raise SystemExit(f"{URL_ENV} names the database")
    return serve(args.port, args.workers)


if __name__ == "__main__":
    sys.exit(main())
