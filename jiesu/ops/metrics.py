"""Prometheus metrics: what `GET /metrics` answers (docs/operations.md, "Monitoring").

Two kinds of figures:

- the process's own, kept by `prometheus_client` as requests run: HTTP requests and their
  durations by route template (`/api/v1/tickets/{ticket_id}`, never the raw path, so the
  number of series stays bounded), method and status class, requests in flight
  (`middleware.py`), and the intake's advice time (`time_advice`, around `advise(...)`);
- the database's, computed when Prometheus scrapes and kept `DB_CACHE_S` seconds, so that
  several scrapers (or a scrape storm) cost one round of queries: the job queue, overdue
  orders, the outbox and deliveries backlog, the workers' heartbeats. Each query is served by
  an index (`ix_job_pending`, `ix_ticket_status_due`, `ix_outbox_undelivered`, `ix_delivery_due`,
  the heartbeat table is one row per process): a scrape stays cheap at 25 M orders
  (tests/test_ops_metrics.py checks the plans on PostgreSQL).

`jiesu serve --workers N` is N processes: the serving supervisor points
`PROMETHEUS_MULTIPROC_DIR` at a fresh directory before they start, each process writes its
figures there, and whichever process answers a scrape sums them all (`MultiProcessCollector`);
a process that died is marked dead (its in-flight gauge goes). One process alone uses the
default registry. The worker is not scraped: its liveness reaches Prometheus through its
heartbeat row.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from jiesu.db.engine import Database

DB_CACHE_S = 15.0  # the database's figures: one round of queries per this many seconds
LIVE_WORKER_S = 120.0  # a worker whose last beat is older is not counted live
STOPPED_SHOWN_S = 3600.0  # a stopped worker stays in the figures this long, then drops out
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OVERDUE_STATUSES = ("dispatched", "accepted")  # as assessment.service.OPEN: open, with a due
STATES = ("running", "stopping", "stopped")

INTAKE_ADVICE = Histogram(
    "jiesu_intake_advice_seconds",
    "Time the intake's suggestions (classification, dispatch, duplicates) take per order.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
HTTP_REQUESTS = Counter(
    "jiesu_http_requests",
    "HTTP requests answered, by method, route template and status class (2xx, 4xx …).",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "jiesu_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ANALYSIS_READS = Counter(
    "jiesu_analysis_reads",
    "Analysis sessions (dashboards, rankings, reports, exports) by the database that answered "
    "them: replica, or primary (no replica set, or it lagged or failed).",
    ["on"],
)
REPLICA_LAG = Gauge(
    "jiesu_analysis_replica_lag_seconds",
    "How far the read replica was behind the primary at its last check (-1: it did not answer).",
    multiprocess_mode="livemostrecent",
)
HTTP_IN_FLIGHT = Gauge(
    "jiesu_http_requests_in_flight",
    "Requests being answered now (all processes of the server).",
    multiprocess_mode="livesum",
)


@contextmanager
def time_advice() -> Iterator[None]:
    """Times the block as one intake's advice."""
    with INTAKE_ADVICE.time():
        yield


# The labelled children by (method, route, status class): `labels()` takes a lock and builds
# a key each time; this lookup does neither (bounded: the routes are the app's, the methods
# seven and OTHER).
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request (the middleware calls it once per request)."""
    method = method if method in METHODS else "OTHER"
    key = (method, route, status // 100)
    found = _children.get(key)
    if found is None:
        found = _children[key] = (
            HTTP_REQUESTS.labels(method, route, f"{status // 100}xx"),
            HTTP_DURATION.labels(method, route),
        )
    found[0].inc()
    found[1].observe(seconds)


def multiprocess_dir() -> str | None:
    """The shared directory of `serve --workers N`, when this process is one of them."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and os.path.isdir(path) else None


class DatabaseCollector:
    """The database's figures, queried at scrape time and cached `DB_CACHE_S` seconds.

    A failing query (the database is down) yields `jiesu_database_up 0` and nothing else of the
    database's: the process's own figures still answer."""

    def __init__(
        self,
        db: Database,
        *,
        now: Callable[[], datetime] | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache_s: float = DB_CACHE_S,
    ) -> None:
        self.db, self.cache_s, self.clock = db, cache_s, clock
        self.now = now or _utcnow
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None
        self.queries = 0  # rounds of queries made (tests: the cache holds)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            clock = self.clock()
            if self._cached is None or clock - self._cached[0] >= self.cache_s:
                self._cached = (clock, self._measure())
            families = self._cached[1]
        yield from families

    def _measure(self) -> list[Metric]:
        self.queries += 1
        up = GaugeMetricFamily("jiesu_database_up", "1 when the scrape's queries succeeded.")
        try:
            with self.db.read() as session:
                families = database_figures(session, self.now())
        except Exception:  # the database is down: say so, keep the process's figures
            import logging

            logging.getLogger("jiesu.ops").warning("metrics: the database did not answer")
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]


def database_figures(session: object, now: datetime) -> list[Metric]:
    """The database's figures at `now`, each from one indexed query."""
    from sqlalchemy import func, or_, select
    from sqlalchemy.orm import Session

    from jiesu.delivery.models import Delivery
    from jiesu.ops.models import Heartbeat
    from jiesu.tickets.models import Job, Outbox, Ticket

    assert isinstance(session, Session)

    def age(then: datetime | None) -> float:
        return max(0.0, (now - then).total_seconds()) if then is not None else 0.0

    due = (Job.status == "pending", Job.run_at <= now)
    depth = session.scalar(select(func.count()).select_from(Job).where(*due)) or 0
    oldest_job = session.scalar(select(func.min(Job.run_at)).where(*due))
    jobs = GaugeMetricFamily("jiesu_jobs_due", "Timers (jobs) due now and not yet done.")
    jobs.add_metric([], depth)
    jobs_age = GaugeMetricFamily(
        "jiesu_jobs_oldest_due_age_seconds", "How long the oldest due job has waited (0: none)."
    )
    jobs_age.add_metric([], age(oldest_job))

    overdue = GaugeMetricFamily(
        "jiesu_orders_overdue",
        "Open orders past their completion deadline, by status.",
        labels=["status"],
    )
    counted = dict(
        session.execute(
            select(Ticket.status, func.count())
            .where(Ticket.status.in_(OVERDUE_STATUSES), Ticket.due_at < now)
            .group_by(Ticket.status)
        ).all()
    )
    for status in OVERDUE_STATUSES:
        overdue.add_metric([status], counted.get(status, 0))

    undelivered = Outbox.delivered_at.is_(None)
    backlog = session.scalar(select(func.count()).select_from(Outbox).where(undelivered)) or 0
    oldest_outbox = session.scalar(
        select(Outbox.created_at).where(undelivered).order_by(Outbox.id).limit(1)
    )
    outbox = GaugeMetricFamily("jiesu_outbox_backlog", "Notices not yet fanned out to channels.")
    outbox.add_metric([], backlog)
    outbox_age = GaugeMetricFamily(
        "jiesu_outbox_oldest_age_seconds", "Age of the oldest notice not yet fanned out (0: none)."
    )
    outbox_age.add_metric([], age(oldest_outbox))

    waiting = (Delivery.status == "pending", Delivery.next_at <= now)
    pending = session.scalar(select(func.count()).select_from(Delivery).where(*waiting)) or 0
    oldest_delivery = session.scalar(select(func.min(Delivery.next_at)).where(*waiting))
    dead = (
        session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "dead"))
        or 0
    )
    deliveries = GaugeMetricFamily(
        "jiesu_deliveries_due", "Deliveries (webhook, SMS, e-mail) due now and not yet sent."
    )
    deliveries.add_metric([], pending)
    deliveries_age = GaugeMetricFamily(
        "jiesu_deliveries_oldest_due_age_seconds",
        "How long the oldest due delivery has waited (0: none).",
    )
    deliveries_age.add_metric([], age(oldest_delivery))
    dead_letters = GaugeMetricFamily(
        "jiesu_deliveries_dead", "Dead letters: deliveries given up after their last try."
    )
    dead_letters.add_metric([], dead)

    shown_since = now - timedelta(seconds=STOPPED_SHOWN_S)
    beats = session.execute(
        select(Heartbeat.name, Heartbeat.state, Heartbeat.beat_at).where(
            Heartbeat.kind == "worker",
            or_(Heartbeat.state != "stopped", Heartbeat.beat_at >= shown_since),
        )
    ).all()
    beat_age = GaugeMetricFamily(
        "jiesu_worker_heartbeat_age_seconds",
        "Seconds since each worker's last heartbeat.",
        labels=["worker"],
    )
    state = GaugeMetricFamily(
        "jiesu_worker_state",
        "Each worker's state (1 for the one it is in).",
        labels=["worker", "state"],
    )
    live = GaugeMetricFamily(
        "jiesu_workers_live",
        f"Workers running whose last beat is under {LIVE_WORKER_S:.0f} s old.",
    )
    count = 0
    for name, current, beat_at in beats:
        seconds = age(beat_at)
        beat_age.add_metric([name], seconds)
        for each in STATES:
            state.add_metric([name, each], 1 if each == current else 0)
        count += current != "stopped" and seconds <= LIVE_WORKER_S
    live.add_metric([], count)
    return [
        jobs, jobs_age, overdue, outbox, outbox_age, deliveries, deliveries_age, dead_letters,
        beat_age, state, live,
    ]  # fmt: skip


def _utcnow() -> datetime:
    from jiesu.db.base import utcnow

    return utcnow()


_collectors: dict[int, DatabaseCollector] = {}
_collectors_lock = threading.Lock()


def collector_for(db: Database) -> DatabaseCollector:
    """One cached collector per database (per app), so its cache serves every scrape."""
    with _collectors_lock:
        found = _collectors.get(id(db))
        if found is None or found.db is not db:
            found = _collectors[id(db)] = DatabaseCollector(db)
        return found


def exposition(db: Database | None) -> tuple[bytes, str]:
    """The body and content type of a scrape: the process's (or, under `serve --workers N`,
    every process's) figures, then the database's."""
    path = multiprocess_dir()
    if path is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if db is not None:
        body += generate_latest(collector_for(db))  # anything with collect() will do
    return body, CONTENT_TYPE_LATEST
