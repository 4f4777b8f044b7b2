"""`jiesu demo generate`: write the demo city's history in bulk.

Reads the loaded city (units, categories, dispatch catalogue, users, calendar) once, lets a
`Storyteller` tell each ticket's story, and writes tickets, assignments and events with the
fastest path each database has: one `executemany` per table on SQLite, `COPY` on PostgreSQL. One
transaction per day, so an interrupted run keeps whole days; ticket numbers continue each day's
sequence (and the counters are moved past them), so later intake never collides.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select

from jiesu.citypack.parse import Duration
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.demo.bulk import BulkLoad, DayStories, sqlite_stamp
from jiesu.demo.knowledge import count_uses, demo_base
from jiesu.demo.story import CategoryChoice, Context, Place, Stamp, Storyteller, daily_count
from jiesu.demo.texts import TextBank
from jiesu.org.models import Unit, User
from jiesu.settings import REPO_ROOT, city_tz
from jiesu.taxonomy.models import CalendarOverride, Category, CitySetting, DispatchRule
from jiesu.taxonomy.routing import Catalogue, Rule, UnitInfo
from jiesu.tickets.models import Assignment, Event, Ticket, TicketCounter
from jiesu.timelimits.calendar import WorkCalendar
from jiesu.timelimits.clocks import Clocks

DEFAULT_PACK = REPO_ROOT / "citypacks" / "beijing"
INLINE_BELOW = 20_000  # tickets: fewer are told inline (starting a worker costs about a second)
# Rough resident weights of Beijing's districts, so Chaoyang gets more tickets than Yanqing.
DISTRICT_WEIGHT = {
    "110101": 7, "110102": 11, "110105": 34, "110106": 20, "110107": 6, "110108": 31,
    "110109": 4, "110111": 13, "110112": 18, "110113": 13, "110114": 22, "110115": 20,
    "110116": 4, "110117": 4, "110118": 5, "110119": 3,
}  # fmt: skip


def default_days(today: date) -> int:
    """Days of history from the 1st of the month two months back to `today`: on any date last
    month is complete and has a month before it, so its ranking shows the change."""
    month = today.month - 2
    start = date(today.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
    return (today - start).days + 1


@dataclass
class Result:
    tickets: int
    events: int
    assignments: int
    seconds: float  # writing the history
    metrics_seconds: float = 0.0  # rebuilding the assessment's rollups afterwards


def load_context(db: Database, pack_dir: Path) -> Context:
    """Read what the stories need from the loaded city."""
    with db.read() as s:
        units = list(s.scalars(select(Unit).where(Unit.active)))
        by_id = {u.id: u for u in units}
        settings = s.get(CitySetting, "pack")
        if settings is None or not units:
            raise SystemExit("no city loaded: run `jiesu citypack load DIR` first")
        pack = settings.value
        categories = list(s.scalars(select(Category).where(Category.active)))
        rules = list(s.scalars(select(DispatchRule).where(DispatchRule.active)))
        users = list(s.scalars(select(User).where(User.active)))
        overrides = {o.day: o.kind == "workday" for o in s.scalars(select(CalendarOverride))}
    code_of = {u.id: u.code for u in units}
    infos = {
        u.code: UnitInfo(u.code, u.kind, code_of.get(u.parent_id or -1), u.function) for u in units
    }
    cat_code = {c.id: c.code for c in categories}
    catalogue = Catalogue(
        [
            Rule(
                cat_code[r.category_id],
                r.route,
                r.function,
                code_of.get(r.unit_id or -1),
                code_of.get(r.district_id or -1),
                r.note,
            )
            for r in rules
            if r.category_id in cat_code
        ],
        infos,
    )
    places, weights, neighbours = [], [], {}
    for street in (u for u in units if u.kind == "street"):
        district = by_id.get(street.parent_id or -1)
        if district is None:
            continue
        places.append(
            Place(district.id, district.name, district.code, street.id, street.name, street.code)
        )
        neighbours.setdefault(district.code, []).append(street.code)
    counts: dict[str, int] = {}
    for p in places:
        counts[p.district_code] = counts.get(p.district_code, 0) + 1
    for p in places:
        weights.append(DISTRICT_WEIGHT.get(p.district_code, 5) / counts[p.district_code])
    bank = TextBank.from_pack(pack_dir)
    children = Counter(c.parent_id for c in categories if c.parent_id)
    choices = []
    for c in categories:
        if c.level < 2:
            continue
        texts = bank.for_category(c.code, c.name, c.keywords)
        # A second-level category shares its weight with its own children.
        group = children[c.id] if c.level == 2 else children[c.parent_id]
        texts = replace(texts, weight=texts.weight / (group + 1))
        choices.append(CategoryChoice(c.id, c.code, c.effective_tier, texts))
    parent_code = {c.id: cat_code.get(c.parent_id or -1) for c in categories}
    by_code = {c.code: c for c in choices}
    urgent_child = {}
    for c in categories:
        parent = by_code.get(parent_code[c.id] or "")
        if c.code in by_code and c.effective_tier == "T2h" and parent and parent.tier != "T2h":
            urgent_child.setdefault(parent.code, by_code[c.code])
    service_centre = next((u for u in units if u.function == "service_centre"), None)
    if service_centre is None:
        raise SystemExit("the city has no service centre unit (function service_centre)")
    by_role: dict[str, list[int]] = {}
    handlers: dict[int, list[int]] = {}
    for user in users:
        if user.password_hash is None:  # system accounts (the portal) take no part in stories
            continue
        by_role.setdefault(user.role, []).append(user.id)
        if user.role in ("handler", "unit_admin"):
            handlers.setdefault(user.unit_id, []).append(user.id)
    fallback = [u.id for u in users if u.unit_id == service_centre.id] or [None]
    tiers = {
        name: {phase: Duration.parse(v) for phase, v in phases.items()}
        for name, phases in pack["tiers"].items()
    }
    return Context(
        tz=city_tz(),
        places=places,
        place_weights=weights,
        categories=choices,
        catalogue=catalogue,
        unit_ids={u.code: u.id for u in units},
        unit_codes={u.id: u.code for u in units},
        tiers=tiers,
        clocks=Clocks(WorkCalendar(overrides), city_tz()),
        texts=bank,
        agents=by_role.get("agent") or fallback,  # type: ignore[arg-type]
        dispatchers=by_role.get("dispatcher") or fallback,  # type: ignore[arg-type]
        callback_agents=by_role.get("callback_agent") or fallback,  # type: ignore[arg-type]
        handlers=handlers,
        service_centre_id=service_centre.id,
        neighbours={p.street_code: neighbours[p.district_code] for p in places},
        urgent_child=urgent_child,
        knowledge=demo_base(db),
    )


def tell_day(teller: Storyteller, day: date, count: int, first_seq: int, seed: int) -> DayStories:
    """Tell `count` stories received on `day` (those before `now`), numbered after `first_seq`.

    Each day has its own seed, so a day's stories do not depend on which process tells them or
    in which order: inline and in worker processes the history is the same.
    """
    teller.rng.seed(seed)
    key, seq = f"{day:%Y%m%d}", first_seq
    out = DayStories(key, first_seq, [], [], [])
    for local_id, created in enumerate(sorted(teller.created_at(day) for _ in range(count))):
        if created > teller.now:
            break
        seq += 1
        story = teller.tell(local_id, f"{key}{seq:05d}", day, created)
        out.tickets.append(story.ticket)
        out.assignments.extend(story.assignments)
        out.events.extend(story.events)
        out.uses.extend(story.uses)
    out.last = seq
    return out


_worker_teller: Storyteller | None = None


def _start_worker(ctx: Context, now: datetime, stamp: Stamp | None) -> None:
    global _worker_teller
    _worker_teller = Storyteller(ctx, random.Random(), now, stamp)


def _tell_in_worker(task: tuple[date, int, int, int]) -> DayStories:
    assert _worker_teller is not None, "worker not started"
    return tell_day(_worker_teller, *task)


class _Tellers:
    """Tells the days' stories inline, or in worker processes while this process writes."""

    def __init__(self, ctx: Context, now: datetime, stamp: Stamp | None, workers: int) -> None:
        self.ctx, self.now, self.stamp, self.workers = ctx, now, stamp, workers
        self.pool: Any = None

    def __enter__(self) -> _Tellers:
        if self.workers:
            # spawn, not fork: the parent holds database connections and maybe a progress thread.
            self.pool = get_context("spawn").Pool(
                self.workers, initializer=_start_worker, initargs=(self.ctx, self.now, self.stamp)
            )
        return self

    def __exit__(self, *_: Any) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def tell(self, tasks: list[tuple[date, int, int, int]]) -> Iterator[DayStories]:
        """The days in order. Workers run at most `2 * workers` days ahead of the writer."""
        if self.pool is None:
            teller = Storyteller(self.ctx, random.Random(), self.now, self.stamp)
            for task in tasks:
                yield tell_day(teller, *task)
            return
        window: deque[Any] = deque()
        pending = iter(tasks)
        for task in pending:
            window.append(self.pool.apply_async(_tell_in_worker, (task,)))
            if len(window) >= 2 * self.workers:
                break
        while window:
            result = window.popleft().get()
            task = next(pending, None)
            if task is not None:
                window.append(self.pool.apply_async(_tell_in_worker, (task,)))
            yield result


def generate(
    db: Database,
    *,
    days: int,
    per_day: int,
    seed: int = 12345,
    end: date | None = None,
    now: datetime | None = None,
    pack_dir: Path = DEFAULT_PACK,
    progress: bool = False,
    workers: int | None = None,
    metrics: bool = True,
) -> Result:
    """Write `days` days of history ending on `end` (default today, city time) for the loaded city.

    `workers` story-telling processes work while this process writes (default: one per core but
    one on SQLite for runs of 20,000 tickets or more, none otherwise). With `metrics`, the
    assessment's facts and rollups are rebuilt from the events afterwards (the bulk load writes
    events without taking actions, so nothing maintained them on the way).
    """
    started = time.perf_counter()
    ctx = load_context(db, pack_dir)
    now = now or utcnow()
    last_day = end or now.astimezone(ctx.tz).date()
    rng = random.Random(seed)
    plan = [
        (day, daily_count(per_day, day, rng), rng.randrange(2**32))
        for day in (last_day - timedelta(days=n) for n in range(days - 1, -1, -1))
    ]
    total = sum(count for _, count, _ in plan)
    # Measured (docs/benchmarks.md): PostgreSQL goes fastest with stories told here and a writer
    # thread; SQLite with stories told in worker processes and rows written here.
    threaded = db.dialect == "postgresql"
    if workers is None:
        big = total >= INLINE_BELOW and not threaded
        workers = max(1, (os.cpu_count() or 1) - 1) if big else 0
    with db.read() as session:
        ids = tuple(
            int(session.scalar(select(func.coalesce(func.max(t.id), 0))) or 0) + 1
            for t in (Ticket, Assignment, Event)
        )
        counters = dict(
            session.execute(
                select(TicketCounter.day, TicketCounter.last).where(
                    TicketCounter.day.in_([f"{d:%Y%m%d}" for d, _, _ in plan])
                )
            ).all()
        )
    tasks = [(d, n, counters.get(f"{d:%Y%m%d}", 0), s) for d, n, s in plan]
    stamp = None if db.dialect == "postgresql" else sqlite_stamp
    bar = Progress(
        TextColumn("[bold]演示数据[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), disable=not progress,
    )  # fmt: skip
    n_tickets = n_events = n_assignments = 0
    with (
        bar,
        _Tellers(ctx, now, stamp, workers) as tellers,
        BulkLoad(db, ids, threaded=threaded) as load,
    ):  # type: ignore[arg-type]
        progress_task = bar.add_task("tickets", total=total)
        for (_, count, _, _), day in zip(tasks, tellers.tell(tasks), strict=True):
            load.put(day)
            n_tickets += len(day.tickets)
            n_events += len(day.events)
            n_assignments += len(day.assignments)
            bar.advance(progress_task, count)
    n_tickets += _plant(db, ctx, now, seed)
    if ctx.knowledge is not None:
        count_uses(db)
    schedule_open(db, now)
    written = time.perf_counter() - started
    if metrics:
        from jiesu.assessment.service import rebuild

        with db.write() as session:
            rebuild(db_session=session)
    return Result(n_tickets, n_events, n_assignments, written,
                  time.perf_counter() - started - written)  # fmt: skip


def _plant(db: Database, ctx: Context, now: datetime, seed: int) -> int:
    """The warning events the detectors exist for (`demo/plant.py`), added after the bulk load
    and before timers and rollups, so they are scheduled and counted like every other order."""
    from jiesu.demo import plant

    return plant.plant_all(db, ctx, now, seed)


def schedule_open(db: Database, now: datetime, batch: int = 1000) -> int:
    """Give every order still open the timers an action at `now` would have left it (a warning
    at 80% and a notice at the due of each phase not met): the stories write events, not jobs,
    so without this the worker would never warn about the demo's open orders. Returns how many
    orders were scheduled."""
    from sqlalchemy.orm import selectinload

    from jiesu.taxonomy.service import city_clocks, pack_settings
    from jiesu.tickets.models import Job
    from jiesu.tickets.service import ticket_deadlines
    from jiesu.tickets.timers import schedule

    done = 0
    with db.write() as session:
        ids = list(session.scalars(select(Ticket.id).where(Ticket.status != "closed")))
        settings = pack_settings(db_session=session)
        clocks = city_clocks(db_session=session)
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            tickets = session.scalars(
                select(Ticket)
                .where(Ticket.id.in_(chunk))
                .options(
                    selectinload(Ticket.assignments).selectinload(Assignment.unit),
                    selectinload(Ticket.events),
                )
            ).all()
            jobs: dict[int, list[Job]] = {t.id: [] for t in tickets}
            for job in session.scalars(select(Job).where(Job.ticket_id.in_(chunk))):
                jobs[job.ticket_id or 0].append(job)  # an earlier run's (generate run twice)
            with session.no_autoflush:
                for ticket in tickets:
                    current = ticket_deadlines(
                        ticket, db_session=session, now=now, settings=settings, clocks=clocks
                    )
                    schedule(ticket, current, db_session=session, existing_jobs=jobs[ticket.id])
                    done += 1
            session.flush()
            session.expunge_all()
    return done
