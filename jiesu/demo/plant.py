"""The events each early-warning detector exists for, planted in the demo history.

A demo whose warnings page is empty shows nothing of what the detectors do. After the bulk load
(`demo.generate.generate` calls `plant_all` once, before the timers are scheduled and the rollups
rebuilt) this adds, as realistic orders told by the same `Storyteller` along the same lifecycle
paths and written by the same bulk path:

- a **burst** (诉求激增): the day before `now`, 16 orders of fallen trees after a gale (winter and
  spring) or of waterlogging after a rainstorm (summer and autumn) in one street of 朝阳区;
- a **repeat caller** (重复诉求): one phone, one address, five orders about the leak from the flat
  above within 25 days;
- **bounced orders** (反复退单): two orders each returned by three units in turn;
- a **unit drifting into inaction** (履职下滑): one street's orders of the three months before this
  one, 30 a month, replied late and rated dissatisfied more each month (none, 40%, 80%);
- an **emerging topic** (新兴话题): twelve orders of the last five days about e-bike lithium
  batteries (锂电池), a term no earlier order uses;
- **每月一题 candidates**: two problems a city takes up as 每月一题 (物业, 噪声 …) recur in the
  months of the six-month window the history does not reach (20 orders each), so they are in
  the top ten in at least four of six months, as a year of real history would show.

Everything is drawn from `seed`, so the same seed plants the same orders. A city pack without
the categories used here (the tests' tiny pack) gets none.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

import jiesu.demo.story as story_module
from jiesu.db.engine import Database
from jiesu.demo.bulk import BulkLoad, DayStories, sqlite_stamp
from jiesu.demo.story import (
    RETURN_REASONS,
    CategoryChoice,
    Context,
    Place,
    Story,
    Storyteller,
    Weighted,
    one,
)
from jiesu.tickets.models import Assignment, Event, Ticket, TicketCounter

STORM_WINTER = "020802"  # 树木倒伏断枝
STORM_SUMMER = "1106"  # 积水 (雨水倒灌、道路积水)
LEAK = "010202"  # 房屋漏水
BOUNCE = "010106"  # 物业弃管与交接: whose job it is is often disputed
TOPIC = "100202"  # 电动自行车违规充电
NEEDED = (STORM_WINTER, STORM_SUMMER, LEAK, BOUNCE, TOPIC)
BURST_DISTRICT = "110105"  # 朝阳区
INACTION_DISTRICT = "110106"  # 丰台区
# What a city takes up as 每月一题 (in order of preference), when among its ten most frequent.
THEMES = (
    "0101",
    "010101",
    "0204",
    "020401",
    "0305",
    "030502",
    "1101",
    "110101",
    "0102",
    "010202",
    "0201",
    "0202",
)

Texts = tuple[tuple[str, ...], tuple[str, ...]]  # titles, contents

GALE: Texts = (
    ("大风刮倒路边大树", "小区内树木倒伏砸车", "大风过后树枝断落挡路"),
    (
        "昨天夜里刮大风，{place}门口一棵大杨树连根倒了，横在路上，车过不去，请尽快派人清理。",
        "大风把{place}里的一棵树刮倒了，正好砸在停着的车上，树还压着电线，很危险，请园林部门来处理。",
        "{place}旁边人行道上好几根粗树枝被大风刮断了，随时会掉下来，行人从下面走很危险。",
    ),
)
RAIN: Texts = (
    ("暴雨后道路积水未排", "暴雨后雨水倒灌地下室", "暴雨过后小区积水严重"),
    (
        "昨天暴雨，{place}门口的积水到现在还没退，有半尺多深，老人孩子出不了门，请排水部门来抽水。",
        "昨晚暴雨，{place}的地下室进水了，好几户的储藏间都泡了，请尽快组织抢排。",
        "暴雨过后{place}里的雨水井全堵了，积水排不出去，请派人疏通雨水管线。",
    ),
)
LEAK_TEXTS: Texts = (
    ("楼上漏水一直没解决", "楼上漏水再次反映", "卫生间顶棚漏水"),
    (
        "我家楼上卫生间漏水，我家顶棚一直往下滴水，墙皮都泡掉了，楼上住户不配合维修，请协调。",
        "之前反映过楼上漏水的问题，物业来看过一次就没下文了，现在漏得更厉害了，请再协调一下。",
        "楼上漏水又把我家卫生间顶棚泡坏了，已经好几次了，楼上一直不给修，希望尽快解决。",
    ),
)
BOUNCE_TEXTS: Texts = (
    ("老旧小区无人管理", "小区物业撤场后无人管"),
    (
        "我们小区原来的物业撤走了，现在垃圾没人清、楼道灯坏了没人修，问了街道和房管所都说不归他们管。",
        "小区物业合同到期撤场，新物业一直没进来，门禁和电梯都没人管，请明确由哪个部门负责。",
    ),
)
TOPIC_TEXTS: Texts = (
    ("楼下换电柜锂电池冒烟", "电动自行车锂电池充电隐患", "换电柜锂电池起火隐患"),
    (
        "小区门口新装了一排电动自行车换电柜，昨晚有一块锂电池冒烟，离居民楼太近，大家都很担心起火。",
        "外卖骑手在我们楼下换电柜换锂电池，电池柜夜里发烫有焦糊味，请消防部门检查一下是否合规。",
        "楼道里有人给电动自行车的锂电池充电，锂电池鼓包了还在充，存在火灾隐患，请来检查。",
        "单元门口的换电柜锂电池充电时冒烟，物业说不归他们管，请相关部门检查换电柜安全。",
    ),
)


@dataclass
class Spec:
    """One planted order: what it is about, where, who, and how its story bends."""

    day: date
    category: CategoryChoice
    place: Place | None = None  # None: drawn as usual
    texts: Texts | None = None  # None: the pack's wording for the category
    phone: str | None = None
    name: str | None = None
    address: str | None = None
    request_type: str = "complain"
    returns: int = 0  # approved returns before the unit that keeps it
    late: float | None = None  # chance the reply comes after the due
    unhappy: float | None = None  # chance the citizen is reached and dissatisfied
    lead_street: bool = False  # led by the order's own street


class _PlantWalk(story_module._Walk):
    """A story walk bent by the teller's `Spec` (never a move the lifecycle would not allow)."""

    @property
    def spec(self) -> Spec:
        spec = getattr(self.t, "spec", None)
        assert spec is not None
        return spec

    def run(self, request_type: str) -> None:
        self.story.ticket["request_type"] = self.spec.request_type
        self.handle()

    def lead_for(self, exclude: str | None = None) -> tuple[int, str]:
        if self.spec.lead_street and exclude is None:
            return self.ctx.unit_ids[self.place.street_code], "直派属地街乡"
        return super().lead_for(exclude)

    def handle(self) -> None:
        if not self.spec.returns:
            super().handle()
            return
        ctx, rng, previous = self.ctx, self.rng, None
        for _ in range(self.spec.returns):
            unit_id, note = self.lead_for(exclude=previous)
            a = self.dispatch(unit_id, note, round_=1)
            self.ev("request_return", self.later(0.5, 8), self.handler(unit_id), unit_id,
                    "dispatched", note=one(rng, RETURN_REASONS))  # fmt: skip
            self.ev("review_return", self.later(0.2, 4), self.sc_user(ctx.dispatchers),
                    ctx.service_centre_id, "pending_dispatch", note="同意退单，重新派单",
                    data={"approved": True})  # fmt: skip
            self.end(a, "returned")
            previous = self.code_of(unit_id)
        unit_id, note = self.lead_for(exclude=previous)
        self.dispatch(unit_id, "多次退单，请按职责办理", round_=1)  # still with its fourth unit

    def reply(self, a: dict[str, Any], unit_id: int, urgent: bool) -> None:
        late = self.spec.late
        if late is None:
            super().reply(a, unit_id, urgent)
            return
        ticket, rng = self.story.ticket, self.rng
        if rng.random() < late:
            at = max(ticket["due_at"], self.at) + timedelta(hours=rng.uniform(4, 72))
        else:
            room = max((ticket["due_at"] - self.at).total_seconds() / 3600, 0.2)
            at = self.at + timedelta(hours=room * rng.uniform(0.1, 0.8))
        self.ev("reply", at, self.handler(unit_id), unit_id, "replied",
                note="已到现场核实并协调处理完毕，已向诉求人反馈", data={"result": "solved"})  # fmt: skip
        a["replied_at"] = self.at
        ticket["result"] = "solved"

    def evaluate(self) -> None:
        unhappy = self.spec.unhappy
        if unhappy is None or self.rng.random() >= unhappy:
            super().evaluate()
            return
        self.ev("evaluate", self.later(2, 48), self.sc_user(self.ctx.callback_agents),
                self.ctx.service_centre_id, "evaluated",
                data={"reached": True, "solved": False, "satisfaction": "dissatisfied"})  # fmt: skip
        self.story.ticket["solved"], self.story.ticket["satisfaction"] = False, "dissatisfied"


@contextmanager
def _planted_walks() -> Iterator[None]:
    """`Storyteller.tell` walks with `_PlantWalk` meanwhile (one thread: the plant runs alone)."""
    saved = story_module._Walk
    story_module._Walk = _PlantWalk  # type: ignore[misc]
    try:
        yield
    finally:
        story_module._Walk = saved  # type: ignore[misc]


class _Teller(Storyteller):
    """A storyteller whose next story is the one `spec` says."""

    spec: Spec | None = None

    def categories(self, day: date) -> Weighted:
        if self.spec is None:
            return super().categories(day)
        return Weighted([self.spec.category], [1.0])

    def person(self) -> tuple[str, str]:
        name, phone = super().person()
        if self.spec is not None:
            return self.spec.name or name, self.spec.phone or phone
        return name, phone

    def plant(self, spec: Spec, ticket_id: int, number: str, created: datetime) -> Story:
        self.spec = spec
        natural = self._places
        if spec.place is not None:
            self._places = Weighted([spec.place], [1.0])
        try:
            story = self.tell(ticket_id, number, spec.day, created)
        finally:
            self._places, self.spec = natural, None
        t = story.ticket
        if spec.texts is not None:
            titles, contents = spec.texts
            place = (t["address"] or "小区").removeprefix(
                (spec.place.district_name + spec.place.street_name) if spec.place else ""
            )
            t["title"] = one(self.rng, titles)
            t["content"] = one(self.rng, contents).format(place=place)
        if spec.address:
            t["address"] = spec.address
        return story


def _months_back(day: date, n: int) -> date:
    """The first day of the month `n` months before `day`'s."""
    total = day.year * 12 + day.month - 1 - n
    return date(total // 12, total % 12 + 1, 1)


def _workdays(first: date, count: int, rng: random.Random) -> list[date]:
    """`count` weekdays of `first`'s month (days 2–27), drawn."""
    days = [first + timedelta(days=k) for k in range(1, 27)]
    weekdays = [d for d in days if d.weekday() < 5]
    return sorted(rng.choice(weekdays) for _ in range(count))


def plan(ctx: Context, now: datetime, seed: int, top: list[str],
         empty_months: set[date]) -> list[Spec]:  # fmt: skip
    """The planted orders (pure: the city, the clock, the seed and what the history holds)."""
    rng = random.Random(f"plant:{seed}")
    cats = {c.code: c for c in ctx.categories}
    today = now.astimezone(ctx.tz).date()
    specs: list[Spec] = []

    def streets(district: str) -> list[Place]:
        found = [
            p for p in ctx.places if p.district_code == district and p.street_code in ctx.unit_ids
        ]
        return found or list(ctx.places)

    # A storm yesterday: one street of 朝阳区.
    storm_day = today - timedelta(days=1)
    winter = storm_day.month in (12, 1, 2, 3, 4, 5)
    storm = cats[STORM_WINTER if winter else STORM_SUMMER]
    street = rng.choice(streets(BURST_DISTRICT))
    for _ in range(16):
        specs.append(Spec(storm_day, storm, street, GALE if winter else RAIN,
                          request_type="help"))  # fmt: skip

    # A repeat caller: five orders within 25 days, one phone, one address.
    home = rng.choice(ctx.places)
    name = one(rng, story_module.SURNAMES) + one(rng, story_module.GIVEN)
    phone = "139" + f"{rng.randrange(10**8):08d}"
    address = (
        f"{home.district_name}{home.street_name}{rng.randint(2, 30)}号楼{rng.randint(1, 6)}单元"
    )
    for back in (25, 18, 11, 6, 2):
        specs.append(Spec(today - timedelta(days=back), cats[LEAK], home, LEAK_TEXTS, phone=phone,
                          name=name, address=address))  # fmt: skip

    # Bounced orders: returned by three units in turn.
    for back in (9, 4):
        specs.append(Spec(today - timedelta(days=back), cats[BOUNCE], rng.choice(ctx.places),
                          BOUNCE_TEXTS, returns=3))  # fmt: skip

    # A street drifting into inaction over the three months before this one.
    drifting = [
        p for p in streets(INACTION_DISTRICT) if ctx.handlers.get(ctx.unit_ids[p.street_code])
    ]
    slow = rng.choice(drifting or streets(INACTION_DISTRICT))
    street_cats = [c for c in ctx.categories if c.tier not in ("T2h", "T24h")
                   and (r := ctx.catalogue.route(c.code, slow.district_code, slow.street_code))
                   and r.unit == slow.street_code]  # fmt: skip
    chosen = street_cats or [cats[LEAK]]
    for k, share in ((3, 0.0), (2, 0.4), (1, 0.8)):
        for day in _workdays(_months_back(today, k), 30, rng):
            specs.append(Spec(day, rng.choice(chosen), slow, late=share, unhappy=share,
                              lead_street=True))  # fmt: skip

    # An emerging topic: e-bike lithium batteries, the last five days.
    for back in (5, 5, 4, 4, 4, 3, 3, 2, 2, 2, 1, 1):
        specs.append(Spec(today - timedelta(days=back), cats[TOPIC], rng.choice(ctx.places),
                          TOPIC_TEXTS, request_type="report"))  # fmt: skip

    # 每月一题: the most frequent categories recur in the months the history does not reach.
    for first in sorted(empty_months):
        for code in top:
            if code in cats:
                for day in _workdays(first, 20, rng):
                    specs.append(Spec(day, cats[code]))
    return specs


def _history(db: Database, ctx: Context, now: datetime) -> tuple[list[str], set[date]]:
    """Two categories a city takes up as 每月一题 (`THEMES`, those among the ten most frequent
    of the last 60 days first), and the months of the six before this one that hold no order."""
    today = now.astimezone(ctx.tz).date()
    codes = {c.id: c.code for c in ctx.categories}
    with db.read() as s:
        since = datetime.combine(today - timedelta(days=60), time(0), ctx.tz)
        counts = Counter({
            codes[cid]: int(n)
            for cid, n in s.execute(select(Ticket.category_id, func.count())
                                    .where(Ticket.created_at >= since)
                                    .group_by(Ticket.category_id))
            if cid in codes
        })  # fmt: skip
        empty = set()
        for k in range(1, 7):
            first = _months_back(today, k)
            last = _months_back(today, k - 1)
            n = s.scalar(select(func.count()).select_from(Ticket).where(
                Ticket.created_at >= datetime.combine(first, time(0), ctx.tz),
                Ticket.created_at < datetime.combine(last, time(0), ctx.tz)))  # fmt: skip
            if not n:
                empty.add(first)
    top = [code for code, _ in counts.most_common(10)]
    chosen = [code for code in THEMES if code in top]
    chosen += [code for code in THEMES if code in codes.values() and code not in chosen]
    return chosen[:2], empty


def plant_all(db: Database, ctx: Context, now: datetime, seed: int) -> int:
    """Tell and write the planted orders (see the module); how many were written."""
    if not all(code in {c.code for c in ctx.categories} for code in NEEDED) or not ctx.places:
        return 0
    top, empty = _history(db, ctx, now)
    specs = plan(ctx, now, seed, top, empty)
    stamp = None if db.dialect == "postgresql" else sqlite_stamp
    teller = _Teller(ctx, random.Random(f"plant-stories:{seed}"), now, stamp)
    by_day: dict[date, list[Spec]] = {}
    for spec in specs:
        by_day.setdefault(spec.day, []).append(spec)
    with db.read() as s:
        ids = tuple(
            int(s.scalar(select(func.coalesce(func.max(t.id), 0))) or 0) + 1
            for t in (Ticket, Assignment, Event)
        )
        counters = dict(s.execute(select(TicketCounter.day, TicketCounter.last).where(
            TicketCounter.day.in_([f"{d:%Y%m%d}" for d in by_day]))).all())  # fmt: skip
    written = 0
    with _planted_walks(), BulkLoad(db, ids) as load:  # type: ignore[arg-type]
        for day in sorted(by_day):
            key = f"{day:%Y%m%d}"
            out = DayStories(key, 0, [], [], [])
            seq = int(counters.get(key, 0))
            times = sorted(teller.created_at(day) for _ in by_day[day])
            for spec, created in zip(by_day[day], times, strict=True):
                if created > now.astimezone(UTC):
                    continue
                seq += 1
                story = teller.plant(spec, len(out.tickets), f"{key}{seq:05d}", created)
                out.tickets.append(story.ticket)
                out.assignments.extend(story.assignments)
                out.events.extend(story.events)
                out.uses.extend(story.uses)
            out.last = seq if out.tickets else 0
            load.put(out)
            written += len(out.tickets)
    return written
