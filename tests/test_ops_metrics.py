"""GET /metrics (jiesu/ops/metrics.py, middleware.py, health.py): Prometheus text by route
template, the database's figures at a pinned instant, the cache, who may scrape, the plans."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import auth
from conftest import principal as person
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, insert, text

from jiesu.db.engine import Database
from jiesu.delivery.models import Delivery
from jiesu.ops import metrics
from jiesu.ops.health import may_scrape
from jiesu.ops.heartbeat import Heartbeats
from jiesu.ops.metrics import DatabaseCollector, database_figures
from jiesu.settings import get_settings
from jiesu.tickets.actions import take_action
from jiesu.tickets.models import Channel, Outbox
from jiesu.tickets.service import create_ticket
from jiesu.tickets.shapes import TicketCreate
from jiesu.web.app import create_app

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # the instant every figure here is taken at
LONG_AGO = NOW - timedelta(days=40)


@pytest.fixture
def local(db: Database) -> Iterator[TestClient]:
    """A client whose peer is 127.0.0.1 (the TestClient's own 'testclient' is no address)."""
    with TestClient(create_app(db), client=("127.0.0.1", 50000)) as c:
        yield c


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(body: str, name: str, **labels: str) -> float:
    return samples(body)[(name, tuple(sorted(labels.items())))]


def dispatched(db: Database, n: int, at: datetime) -> list[int]:
    agent, dispatcher = person(db, "agent1"), person(db, "dispatcher1")
    ids = []
    for _ in range(n):
        with db.write() as s:
            t = create_ticket(TicketCreate(channel=Channel.phone, content="路灯不亮已经三天了"),
                              actor=agent, db_session=s, now=at)  # fmt: skip
            take_action(t.id, "dispatch", {"lead": "S11"}, actor=dispatcher, db_session=s, now=at)
            ids.append(t.id)
    return ids


# ---- requests by route template -----------------------------------------------------------


def test_requests_are_counted_by_route_template_never_by_raw_path(local: TestClient) -> None:
    headers = auth(local, "agent1")
    created = [
        local.post(
            "/api/v1/tickets",
            json={"channel": "phone", "content": "小区路灯不亮已经三天了"},
            headers=headers,
        ).json()["id"]
        for _ in range(2)
    ]
    before = local.get("/metrics").text
    for tid in created:
        assert local.get(f"/api/v1/tickets/{tid}", headers=headers).status_code == 200
    assert local.get("/api/v1/tickets/999999", headers=headers).status_code == 404
    assert local.get("/no/such/path/13912345678").status_code == 404
    body = local.get("/metrics").text
    route = "/api/v1/tickets/{ticket_id}"

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return samples(body).get(key, 0.0) - samples(before).get(key, 0.0)

    assert delta("jiesu_http_requests_total", method="GET", route=route, status="2xx") == 2
    assert delta("jiesu_http_requests_total", method="GET", route=route, status="4xx") == 1
    assert delta("jiesu_http_requests_total", method="GET", route="unmatched", status="4xx") == 1
    assert delta("jiesu_http_request_duration_seconds_count", method="GET", route=route) == 3
    # No raw path, no id, nothing a client typed becomes a label.
    labels = set(re.findall(r'route="([^"]*)"', body))
    assert route in labels and "unmatched" in labels
    assert not [r for r in labels if re.search(r"/\d+(/|$)", r)]  # no id in a label
    assert "13912345678" not in body
    assert value(body, "jiesu_http_requests_in_flight") == 1  # the scrape itself


def test_plain_starlette_routes_are_named_by_their_template(local: TestClient) -> None:
    local.get("/api/v1/openapi.json")
    local.get("/static/app.css")
    body = local.get("/metrics").text
    assert 'route="/api/v1/openapi.json"' in body
    assert re.search(r'route="/static[^"]*"', body)


def test_the_advice_timer_is_a_histogram() -> None:
    before = metrics.INTAKE_ADVICE._sum.get()
    count = sum(b.get() for b in metrics.INTAKE_ADVICE._buckets)
    with metrics.time_advice():
        pass
    assert sum(b.get() for b in metrics.INTAKE_ADVICE._buckets) == count + 1
    assert metrics.INTAKE_ADVICE._sum.get() >= before


# ---- who may scrape ------------------------------------------------------------------------


def test_metrics_answer_only_the_allowed_peers(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(db), client=("192.0.2.7", 40000)) as outsider:
        r = outsider.get("/metrics")
        assert r.status_code == 404 and r.json()["error"] == "not_found"  # as an unknown path
        monkeypatch.setenv("JIESU_METRICS_ALLOW", "10.0.0.0/8, 192.0.2.7")
        get_settings.cache_clear()
        try:
            assert outsider.get("/metrics").status_code == 200
        finally:
            get_settings.cache_clear()
    assert may_scrape("127.0.0.1", ("127.0.0.1", "::1"))
    assert may_scrape("::1", ("127.0.0.1", "::1"))
    assert may_scrape("::ffff:10.1.2.3", ("10.0.0.0/8",))  # an IPv4 peer on a dual-stack socket
    assert not may_scrape("10.1.2.3", ("127.0.0.1", "::1"))
    assert not may_scrape("testclient", ("127.0.0.1",))
    assert not may_scrape(None, ("127.0.0.1",))


def test_a_malformed_allow_list_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIESU_METRICS_ALLOW", "127.0.0.1,prometheus.internal")
    get_settings.cache_clear()
    try:
        with pytest.raises(ValueError, match="JIESU_METRICS_ALLOW"):
            get_settings()
    finally:
        get_settings.cache_clear()


# ---- the database's figures ---------------------------------------------------------------


def _delivery(db: Database, ticket: int, status: str, next_at: datetime) -> None:
    with db.write() as s:
        outbox = s.scalar(insert(Outbox).values(ticket_id=ticket, recipient="unit", payload={},
                                                created_at=LONG_AGO).returning(Outbox.id))  # fmt: skip
        s.execute(insert(Delivery).values(
            outbox_id=outbox, ticket_id=ticket, channel="webhook", key=f"k{status}",
            address="https://example.invalid/hook", body={}, status=status, next_at=next_at,
            created_at=LONG_AGO,
        ))  # fmt: skip


def test_the_database_figures_at_a_pinned_instant(db: Database) -> None:
    with db.read() as s:
        empty = {f.name: f for f in database_figures(s, NOW)}
    assert empty["jiesu_jobs_due"].samples[0].value == 0
    assert empty["jiesu_workers_live"].samples[0].value == 0

    t1, t2 = dispatched(db, 2, LONG_AGO)
    with db.write() as s:  # one accepted: overdue by its status
        take_action(t2, "accept", {}, actor=person(db, "s11.handler"), db_session=s, now=LONG_AGO)
    _delivery(db, t1, "dead", LONG_AGO)
    _delivery(db, t1, "pending", NOW - timedelta(minutes=5))
    _delivery(db, t1, "pending", NOW + timedelta(minutes=5))  # not due yet
    live = Heartbeats(db, now=lambda: NOW - timedelta(seconds=30), host="app1", pid=11)
    live.start()
    gone = Heartbeats(db, now=lambda: NOW - timedelta(minutes=10), host="app1", pid=12)
    gone.start()  # killed: its row stays "running", ageing
    done = Heartbeats(db, now=lambda: NOW - timedelta(minutes=20), host="app2", pid=13)
    done.start()
    done.stopped()
    old = Heartbeats(db, now=lambda: NOW - timedelta(days=2), host="app2", pid=14)
    old.start()
    old.stopped()  # stopped long ago: out of the figures

    with db.read() as s:
        body = generate_latest(_Fixed(database_figures(s, NOW))).decode()
    assert value(body, "jiesu_jobs_due") >= 6  # warn + overdue for accept/contact/complete, each
    assert value(body, "jiesu_jobs_oldest_due_age_seconds") >= timedelta(days=30).total_seconds()
    assert value(body, "jiesu_orders_overdue", status="dispatched") == 1
    assert value(body, "jiesu_orders_overdue", status="accepted") == 1
    assert value(body, "jiesu_outbox_backlog") >= 2  # ours; intake and dispatch add their own
    assert value(body, "jiesu_outbox_oldest_age_seconds") == timedelta(days=40).total_seconds()
    assert value(body, "jiesu_deliveries_due") == 1
    assert value(body, "jiesu_deliveries_oldest_due_age_seconds") == 300
    assert value(body, "jiesu_deliveries_dead") == 1
    assert value(body, "jiesu_worker_heartbeat_age_seconds", worker="app1:11") == 30
    assert value(body, "jiesu_worker_heartbeat_age_seconds", worker="app1:12") == 600
    assert value(body, "jiesu_worker_state", worker="app2:13", state="stopped") == 1
    assert value(body, "jiesu_worker_state", worker="app2:13", state="running") == 0
    assert ("jiesu_worker_heartbeat_age_seconds", (("worker", "app2:14"),)) not in samples(body)
    assert value(body, "jiesu_workers_live") == 1  # 11 only: 12 is too old, 13 stopped


class _Fixed:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def test_the_database_figures_are_cached_between_scrapes(db: Database) -> None:
    clock = [100.0]
    collector = DatabaseCollector(db, now=lambda: NOW, clock=lambda: clock[0], cache_s=15)
    list(collector.collect())
    clock[0] += 14.9
    list(collector.collect())
    assert collector.queries == 1
    clock[0] += 0.2
    families = {f.name: f for f in collector.collect()}
    assert collector.queries == 2
    assert families["jiesu_database_up"].samples[0].value == 1


def test_a_database_that_does_not_answer_is_reported_not_raised() -> None:
    nowhere = Database("postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2")
    try:
        families = list(DatabaseCollector(nowhere, now=lambda: NOW).collect())
    finally:
        nowhere.dispose()
    assert [(f.name, f.samples[0].value) for f in families] == [("jiesu_database_up", 0)]


def test_the_scrape_queries_are_served_by_indexes_on_postgresql(pg_db: Database) -> None:
    """With sequential scans priced out, every query of a scrape must still find a plan without
    one: each has an index that serves it (at 25 M orders a scan would cost seconds)."""
    db = pg_db
    dispatched(db, 1, LONG_AGO)
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.read() as s:
            database_figures(s, NOW)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert len(statements) == 9  # jobs 2, overdue 1, outbox 2, deliveries 3, heartbeats 1
    big = ("job", "ticket", "outbox", "delivery")
    with db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        for statement, parameters in statements:
            plan = "\n".join(
                conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars().all()
            )
            for table in big:
                assert f"Seq Scan on {table} " not in plan + " ", f"{statement}\n{plan}"
