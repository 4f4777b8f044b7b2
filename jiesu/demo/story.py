"""The story of one demo ticket: its row, its assignments and its events, from intake to close.

A `Storyteller` draws one realistic request (when, by which channel, about what, where, by whom)
and walks it along the paths of SPEC §3 with realistic odds and delays: answered on the call,
transferred, rejected, or dispatched to the unit the dispatch catalogue names, then accepted,
contacted, sometimes returned and re-dispatched, extended, overdue, sent back by audit, evaluated
(satisfied or not, or unreachable), reopened for another round, closed. Events that would happen
after `now` are not written, so the latest tickets are still open in every state.

Pure given its context (no database): the generator feeds it rows and writes what it returns.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from jiesu.citypack.parse import Duration
from jiesu.demo.knowledge import DemoBase
from jiesu.demo.texts import CategoryTexts, TextBank
from jiesu.taxonomy.routing import Catalogue
from jiesu.timelimits.clocks import Clocks

# Beijing's mix (SPEC: 58.5% consultations); channels as a hotline sees them.
CITY_REQUEST_TYPES = {
    "consult": 0.58,
    "complain": 0.17,
    "help": 0.13,
    "suggest": 0.06,
    "report": 0.04,
    "praise": 0.02,
}
CHANNELS = {
    "phone": 0.70,
    "wechat": 0.09,
    "app": 0.08,
    "web": 0.07,
    "sms": 0.025,
    "collection_point": 0.02,
    "email": 0.01,
    "window": 0.005,
}
HOURS = [0.3, 0.2, 0.15, 0.1, 0.1, 0.2, 0.5, 1.5, 4, 7, 8, 7.5, 5, 5.5, 7, 7.5, 7, 6, 4.5, 3.5, 3, 2.5, 1.5, 0.8]  # fmt: skip
WEEKDAY_FACTOR = [1.15, 1.05, 1.0, 1.0, 0.95, 0.85, 0.8]
SATISFACTION_IF_SOLVED = {
    "very_satisfied": 0.52,
    "satisfied": 0.33,
    "basically_satisfied": 0.11,
    "dissatisfied": 0.03,
    "very_dissatisfied": 0.01,
}
SATISFACTION_IF_NOT = {
    "very_satisfied": 0.03,
    "satisfied": 0.10,
    "basically_satisfied": 0.25,
    "dissatisfied": 0.40,
    "very_dissatisfied": 0.22,
}
WINDOW_CAUSE_MIX = {"coordination": 0.6, "policy": 0.35, "misconduct": 0.05}
RESULTS = {"solved": 0.78, "partly_solved": 0.12, "not_solvable": 0.10}
SOLVED_GIVEN_RESULT = {"solved": 0.93, "partly_solved": 0.45, "not_solvable": 0.12}
UNHAPPY = ("dissatisfied", "very_dissatisfied")
REJECT_REASONS = [
    "litigation",
    "arbitration",
    "discipline",
    "disclosure",
    "petition",
    "public_order",
]
RETURN_REASONS = [
    "非本单位职责范围",
    "诉求地点不在本辖区",
    "应由区级职能部门办理",
    "属企业经营范围",
]
EXTENSION_REASONS = ["需协调多个部门联合处置", "需等待施工条件", "需第三方检测鉴定", "涉及资金审批"]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文"  # fmt: skip
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国文辉鹏飞玉兰红梅志强海燕丹宇浩然晨阳欣怡子涵雨桐思远佳琪梓萱一鸣俊杰淑珍秀珍凤英德福春生晓东立新"  # fmt: skip
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "156", "158", "159", "166", "176", "177", "180", "181", "185", "186", "187", "188", "189", "198", "199"]  # fmt: skip


def one(rng: random.Random, seq: Sequence[Any]) -> Any:
    """rng.choice without its rejection sampling: plenty uniform for demo data, 3x faster."""
    return seq[int(rng.random() * len(seq))]


Stamp = Callable[[datetime], Any]
TICKET_TIMES = ("created_at", "updated_at", "closed_at", "due_at")
ASSIGNMENT_TIMES = ("dispatched_at", "accepted_at", "contacted_at", "replied_at", "ended_at")


def _same(t: datetime) -> datetime:
    return t


class StoryCut(Exception):
    """The next event would happen after `now`: the story stops here."""


@dataclass(frozen=True)
class Place:
    district_id: int
    district_name: str
    district_code: str
    street_id: int
    street_name: str
    street_code: str


@dataclass(frozen=True)
class CategoryChoice:
    id: int
    code: str
    tier: str
    texts: CategoryTexts


@dataclass
class Context:
    """Everything a story needs about the city, as plain values."""

    tz: ZoneInfo
    places: list[Place]
    place_weights: list[float]
    categories: list[CategoryChoice]
    catalogue: Catalogue
    unit_ids: dict[str, int]
    unit_codes: dict[int, str]
    tiers: dict[str, dict[str, Duration]]
    clocks: Clocks
    texts: TextBank
    agents: list[int]
    dispatchers: list[int]
    callback_agents: list[int]
    handlers: dict[int, list[int]]  # unit id -> user ids
    service_centre_id: int
    neighbours: dict[str, list[str]] = field(default_factory=dict)  # street code -> same district
    # a category -> its urgent (T2h) subcategory, where a danger told under it is filed
    urgent_child: dict[str, CategoryChoice] = field(default_factory=dict)
    # the demo knowledge base (`demo/knowledge.py`): which entry answers a consultation
    knowledge: DemoBase | None = None


# An event is written as a list in the event table's column order (the generator writes millions).
EVENT_FIELDS = ("id", "ticket_id", "seq", "action", "at", "actor_id", "actor_unit_id",
                "state_before", "state_after", "note", "data")  # fmt: skip


@dataclass
class Story:
    ticket: dict[str, Any]
    assignments: list[dict[str, Any]]
    events: list[list[Any]]  # EVENT_FIELDS
    uses: list[dict[str, Any]] = field(default_factory=list)  # kb_use rows (answered with an entry)


class Weighted:
    """A population with cumulative weights: each draw is a bisection, not a pass over weights."""

    def __init__(self, items: list[Any], weights: list[float]) -> None:
        self.items = items
        self.cum = list(accumulate(weights))

    @classmethod
    def of(cls, weights: dict[str, float]) -> Weighted:
        return cls(list(weights), list(weights.values()))

    def draw(self, rng: random.Random) -> Any:
        return self.items[bisect(self.cum, rng.random() * self.cum[-1])]


_tables: dict[int, tuple[dict[str, float], Weighted]] = {}


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    """A weighted draw from a long-lived mapping (module constants, a category's mix)."""
    entry = _tables.get(id(weights))
    if entry is None or entry[0] is not weights:
        entry = _tables[id(weights)] = (weights, Weighted.of(weights))
    return str(entry[1].draw(rng))


def season_of(day: date) -> str:
    return {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
            6: "summer", 7: "summer", 8: "summer"}.get(day.month, "autumn")  # fmt: skip


class Storyteller:
    def __init__(
        self, ctx: Context, rng: random.Random, now: datetime, stamp: Stamp | None = None
    ) -> None:
        """`stamp` turns an aware time into what the writer stores (default: unchanged)."""
        self.ctx, self.rng, self.now = ctx, rng, now
        self.stamp: Stamp = stamp or _same
        self.due_memo: dict[tuple[date, Duration], tuple[datetime, datetime]] = {}
        self._season_tables: dict[str, Weighted] = {}
        self._places = Weighted(ctx.places, ctx.place_weights)
        self._hours = Weighted(list(range(24)), HOURS)
        self._category_places: dict[str, Weighted] = {}

    # ---- drawing the request ----------------------------------------------------------------

    def categories(self, day: date) -> Weighted:
        season = season_of(day)
        if season not in self._season_tables:
            self._season_tables[season] = Weighted(
                self.ctx.categories,
                [c.texts.weight * c.texts.season.get(season, 1.0) for c in self.ctx.categories],
            )
        return self._season_tables[season]

    def created_at(self, day: date) -> datetime:
        rng = self.rng
        hour = self._hours.draw(rng)
        # One draw for the minute, second and microsecond within the hour.
        within = int(rng.random() * 3_600_000_000)
        minute, rest = divmod(within, 60_000_000)
        second, micro = divmod(rest, 1_000_000)
        local = datetime(day.year, day.month, day.day, hour, minute, second, micro or 1,
                         tzinfo=self.ctx.tz)  # fmt: skip
        return local.astimezone(UTC)

    def place_for(self, cat: CategoryChoice) -> Place:
        """Where the request comes from: anywhere, by the districts' weights, unless the category
        exists only in some districts (the pack's place rules: no farmland in 东城)."""
        if not cat.texts.districts:
            return self._places.draw(self.rng)
        table = self._category_places.get(cat.code)
        if table is None:
            share = cat.texts.districts
            table = self._category_places[cat.code] = Weighted(
                self.ctx.places,
                [w * share.get(p.district_code, 0.0)
                 for p, w in zip(self.ctx.places, self.ctx.place_weights, strict=True)],
            )  # fmt: skip
        return table.draw(self.rng)

    def intake_data(self, channel: str) -> dict[str, Any]:
        if channel != "window":
            return {"channel": channel}
        cause = pick(self.rng, WINDOW_CAUSE_MIX)
        return {"channel": channel, "window_cause": cause, "earlier": []}

    def person(self) -> tuple[str, str]:
        rng = self.rng
        given = one(rng, GIVEN) + (one(rng, GIVEN) if rng.random() < 0.67 else "")
        name = one(rng, SURNAMES) + given
        phone = one(rng, MOBILE_PREFIXES) + f"{int(rng.random() * 100_000_000):08d}"
        return name, phone

    def tell(self, ticket_id: int, number: str, day: date, created: datetime) -> Story:
        """The story of a ticket received at `created` (see `created_at`) on the local `day`."""
        ctx, rng = self.ctx, self.rng
        cat = self.categories(day).draw(rng)
        mix = cat.texts.request_types or CITY_REQUEST_TYPES
        request_type = pick(rng, CITY_REQUEST_TYPES if rng.random() < 0.5 else mix)
        place = self.place_for(cat)
        filled = ctx.texts.fill(cat.texts, request_type, place, rng, urgent=cat.tier == "T2h")
        title, content, address = filled.title, filled.content, filled.address
        request_type = filled.request_type
        if request_type == "consult" and ctx.knowledge is not None and not filled.urgent:
            asked = ctx.knowledge.question_for(cat.code, rng)  # a question the base answers
            if asked is not None:
                title, content = asked
        if filled.urgent and cat.tier != "T2h":  # a danger: the urgent subcategory, if any
            cat = ctx.urgent_child.get(cat.code, cat)
        name, phone = self.person()
        confidential = rng.random() < (0.35 if request_type == "report" else 0.02)
        channel = pick(rng, CHANNELS)
        tier = "T2h" if filled.urgent else cat.tier
        ticket: dict[str, Any] = {
            "id": ticket_id, "number": number, "channel": channel, "request_type": request_type,
            "category_id": cat.id, "title": title, "content": content,
            "requester_name": name, "requester_phone": phone,
            "requester_confidential": confidential, "address": address, "lat": None, "lng": None,
            "district_id": place.district_id, "street_id": place.street_id, "status": "received",
            "tier": tier, "urgent": tier == "T2h", "lead_unit_id": None, "round": 1,
            "result": None, "solved": None, "satisfaction": None, "master_id": None,
            "created_by_id": one(rng, ctx.agents), "created_at": created, "updated_at": created,
            "closed_at": None, "due_at": None, "version": 1, "tracking_hash": None,
        }  # fmt: skip
        story = Story(ticket, [], [])
        walker = _Walk(self, story, cat, place, tier)
        try:
            walker.ev("receive", created, ticket["created_by_id"], ctx.service_centre_id,
                      "received", data=self.intake_data(channel))  # fmt: skip
            walker.run(request_type)
        except StoryCut:
            pass
        ticket["version"] = len(story.events)
        stamp = self.stamp
        if stamp is not _same:
            for key in TICKET_TIMES:
                if ticket[key] is not None:
                    ticket[key] = stamp(ticket[key])
            for a in story.assignments:
                for key in ASSIGNMENT_TIMES:
                    if a[key] is not None:
                        a[key] = stamp(a[key])
        return story


class _Walk:
    """Walks one ticket along the lifecycle, appending events until the story ends or `now`."""

    def __init__(
        self, teller: Storyteller, story: Story, cat: CategoryChoice, place: Place, tier: str
    ) -> None:
        self.t, self.story, self.cat, self.place, self.tier = teller, story, cat, place, tier
        self.rng, self.ctx = teller.rng, teller.ctx
        self.at = story.ticket["created_at"]
        self.state = "received"

    # ---- primitives ------------------------------------------------------------------------

    def ev(self, action: str, at: datetime, actor: int | None, unit: int | None, after: str,
           note: str | None = None, data: dict[str, Any] | None = None) -> None:  # fmt: skip
        if at > self.t.now:
            raise StoryCut
        ticket = self.story.ticket
        events = self.story.events
        events.append([
            None, ticket["id"], len(events) + 1, action, self.t.stamp(at), actor, unit,
            None if action == "receive" else self.state, after, note,
            orjson.dumps(data).decode() if data else "{}",
        ])  # fmt: skip
        self.state, self.at = after, at
        ticket["status"], ticket["updated_at"] = after, at

    def later(self, low_h: float, high_h: float) -> datetime:
        """A delay drawn log-uniformly between two bounds, in hours."""
        lo, hi = max(low_h, 1 / 120), max(high_h, low_h + 1 / 120)
        hours = lo * (hi / lo) ** self.rng.random()
        return self.at + timedelta(hours=hours)

    def sc_user(self, users: list[int]) -> int:
        return one(self.rng, users)

    def handler(self, unit_id: int) -> int | None:
        users = self.ctx.handlers.get(unit_id)
        return one(self.rng, users) if users else None

    def close(self) -> None:
        at = self.at + timedelta(minutes=self.rng.uniform(1, 30))
        self.ev("close", at, None, self.ctx.service_centre_id, "closed")
        self.story.ticket["closed_at"] = at

    # ---- the paths -------------------------------------------------------------------------

    def run(self, request_type: str) -> None:
        rng, sc = self.rng, self.ctx.service_centre_id
        r = rng.random()
        if request_type == "consult" and r < 0.86:
            self.answer(sc)
            self.close()
            return
        if self.tier == "T2h" and r < 0.08:
            to = one(rng, ["110", "119", "120", "122"])
            self.ev("transfer", self.later(0.01, 0.05), self.story.ticket["created_by_id"], sc,
                    "transferred", note=f"紧急情况，已转{to}", data={"to": to})  # fmt: skip
            self.close()
            return
        if r > 0.985:
            reason = one(rng, REJECT_REASONS)
            self.ev("reject", self.later(0.05, 0.3), self.story.ticket["created_by_id"], sc,
                    "rejected", note="不属于热线受理范围，已一次性告知法定途径",
                    data={"reason": reason})  # fmt: skip
            self.close()
            return
        self.handle()

    def answer(self, sc: int) -> None:
        """Answered on the call: with the knowledge base's entry for the question where there is
        one (its `kb_use` row kept for the bulk writer), from the agent's own knowledge else."""
        ticket, base = self.story.ticket, self.ctx.knowledge
        at, agent = self.later(0.03, 0.25), ticket["created_by_id"]
        found = base.answer_for(self.cat.code, ticket["content"], at, self.rng) if base else None
        if found is None:
            self.ev("answer", at, agent, sc, "answered", note="已依据政策口径当场答复",
                    data={"callback": False})  # fmt: skip
            return
        entry_id, code, version, head = found
        self.ev("answer", at, agent, sc, "answered", note=head,
                data={"callback": False, "entry": code, "entry_version": version})  # fmt: skip
        self.story.uses.append({"id": None, "entry_id": entry_id, "version_number": version,
                                "ticket_id": ticket["id"], "user_id": agent,
                                "used_at": self.t.stamp(at)})  # fmt: skip

    def lead_for(self, exclude: str | None = None) -> tuple[int, str]:
        ctx, place = self.ctx, self.place
        route = ctx.catalogue.route(self.cat.code, place.district_code, place.street_code)
        code = route.unit if route else place.street_code
        note = route.reason if route else "直派属地街乡"
        if code == exclude:  # an approved return goes elsewhere: a neighbour or the district
            options = [s for s in ctx.neighbours.get(place.street_code, []) if s != exclude]
            code = one(self.rng, options) if options else place.district_code
            note = "退单审核通过后改派"
        return ctx.unit_ids[code], note

    def code_of(self, unit_id: int) -> str:
        """Events name units by code, as the API writes them."""
        return self.ctx.unit_codes[unit_id]

    def dispatch(
        self, unit_id: int, note: str, *, round_: int, action: str = "dispatch"
    ) -> dict[str, Any]:
        ctx, ticket = self.ctx, self.story.ticket
        delay = (0.02, 0.3) if self.tier == "T2h" else (0.1, 3.0)
        at = self.later(*delay)
        due = self.due(at)
        self.ev(action, at, self.sc_user(ctx.dispatchers), ctx.service_centre_id, "dispatched",
                note=note, data={"lead": self.code_of(unit_id), "co_handlers": [], "round": round_,
                                 "due_at": due.isoformat()})  # fmt: skip
        ticket["lead_unit_id"], ticket["due_at"], ticket["round"] = unit_id, due, round_
        assignment = {
            "ticket_id": ticket["id"], "unit_id": unit_id, "role": "lead", "round": round_,
            "active": True, "dispatched_at": at, "accepted_at": None, "contacted_at": None,
            "replied_at": None, "ended_at": None, "end_reason": None,
        }  # fmt: skip
        self.story.assignments.append(assignment)
        return assignment

    def due(self, start: datetime) -> datetime:
        clocks, limit = self.ctx.clocks, self.ctx.tiers[self.tier]["complete"]
        if limit.unit == "wd":
            # Within one working day a working-day due moves exactly with its start: work it
            # out once per day and limit, then shift (the stories ask this thousands of times).
            day = start.astimezone(self.ctx.tz).date()
            if clocks.calendar.is_workday(day):
                memo = self.t.due_memo
                anchor = memo.get((day, limit))
                if anchor is None:
                    anchored = clocks.due(start, limit)
                    assert anchored is not None
                    anchor = memo[(day, limit)] = (start, anchored)
                return anchor[1] + (start - anchor[0])
        due = clocks.due(start, limit)
        assert due is not None  # no pauses, so the limit always runs out
        return due

    def end(self, a: dict[str, Any], reason: str) -> None:
        a["active"], a["ended_at"], a["end_reason"] = False, self.at, reason

    def handle(self) -> None:
        rng, ctx = self.rng, self.ctx
        urgent = self.tier == "T2h"
        unit_id, note = self.lead_for()
        a = self.dispatch(unit_id, note, round_=1)
        # 退单: the unit says it is not theirs; the dispatcher usually agrees.
        if rng.random() < 0.06:
            self.ev("request_return", self.later(0.2, 6), self.handler(unit_id), unit_id,
                    "dispatched", note=one(rng, RETURN_REASONS))  # fmt: skip
            approved = rng.random() < 0.7
            self.ev("review_return", self.later(0.1, 4), self.sc_user(ctx.dispatchers),
                    ctx.service_centre_id, "pending_dispatch" if approved else "dispatched",
                    note="同意退单，重新派单" if approved else "不同意退单，请按职责办理",
                    data={"approved": approved})  # fmt: skip
            if approved:
                self.end(a, "returned")
                code = self.code_of(unit_id)
                unit_id, note = self.lead_for(exclude=code)
                a = self.dispatch(unit_id, note, round_=1, action="dispatch")
        for round_ in (1, 2, 3):
            if round_ > 1:
                self.ev("reopen", self.later(0.5, 24), self.sc_user(ctx.callback_agents),
                        ctx.service_centre_id, "dispatched",
                        note="诉求人不满意，退回重办", data={"round": round_})  # fmt: skip
                self.end(a, "reopened")
                a = dict(a, round=round_, active=True, accepted_at=None, contacted_at=None,
                         replied_at=None, ended_at=None, end_reason=None, dispatched_at=self.at)  # fmt: skip
                self.story.assignments.append(a)
                self.story.ticket["round"] = round_
                self.story.ticket["due_at"] = self.due(self.at)
            self.work_round(a, urgent)
            ticket = self.story.ticket
            unhappy = ticket["solved"] is False or ticket["satisfaction"] in UNHAPPY
            if not unhappy or round_ == 3 or rng.random() > 0.35:
                break
        self.close()

    def work_round(self, a: dict[str, Any], urgent: bool) -> None:
        """Accept, contact, maybe extend, reply, audit, evaluate."""
        rng, ctx, ticket = self.rng, self.ctx, self.story.ticket
        unit_id = a["unit_id"]
        late = rng.random() < 0.06
        accept = (0.02, 0.24) if urgent else ((2.5, 8) if late else (0.05, 1.8))
        self.ev("accept", self.later(*accept), self.handler(unit_id), unit_id, "accepted")
        a["accepted_at"] = self.at
        contact = (0.05, 0.45) if urgent else ((25, 40) if rng.random() < 0.07 else (0.2, 20))
        self.ev("contact", self.later(*contact), self.handler(unit_id), unit_id, "accepted",
                note="已电话联系诉求人，了解具体情况")  # fmt: skip
        a["contacted_at"] = self.at
        if not urgent and rng.random() < 0.05:
            days = one(rng, (3, 5, 7))
            self.ev("request_extension", self.later(2, 48), self.handler(unit_id), unit_id,
                    "accepted", note=one(rng, EXTENSION_REASONS), data={"days": days})  # fmt: skip
            approved = rng.random() < 0.8
            if approved:  # an approved extension moves the deadline by the days asked
                extended = ctx.clocks.due(ticket["due_at"], Duration(days, "wd"))
                assert extended is not None
                ticket["due_at"] = extended
            self.ev("review_extension", self.later(0.5, 8), self.sc_user(ctx.dispatchers),
                    ctx.service_centre_id, "accepted",
                    data={"approved": approved, "due_at": ticket["due_at"].isoformat()})  # fmt: skip
        self.reply(a, unit_id, urgent)
        if rng.random() < 0.03:  # 审核退回: a poor reply goes back
            self.ev("audit", self.later(0.5, 6), self.sc_user(ctx.dispatchers),
                    ctx.service_centre_id, "accepted", note="答复内容不完整，请补充办理过程",
                    data={"passed": False})  # fmt: skip
            self.reply(a, unit_id, urgent)
        self.ev("audit", self.later(0.5, 8), self.sc_user(ctx.dispatchers),
                ctx.service_centre_id, "audited", data={"passed": True})  # fmt: skip
        self.evaluate()

    def reply(self, a: dict[str, Any], unit_id: int, urgent: bool) -> None:
        rng, ticket = self.rng, self.story.ticket
        due = ticket["due_at"]
        if rng.random() < 0.05:  # 超期
            at = due + timedelta(hours=rng.uniform(1, 24 if urgent else 72))
        else:
            room = max((due - self.at).total_seconds() / 3600, 0.1)
            # Most replies come in the first half of the time allowed, few near its end.
            at = self.at + timedelta(hours=room * rng.random() ** 1.6)
        if at <= self.at:
            at = self.at + timedelta(minutes=5)
        result = pick(rng, RESULTS)
        notes = {
            "solved": "已到现场核实并协调处理完毕，已向诉求人反馈",
            "partly_solved": "已部分解决，剩余问题已纳入后续计划",
            "not_solvable": "经核实，诉求超出现行政策规定，已向诉求人解释说明",
        }
        data: dict[str, Any] = {"result": result}
        if result == "not_solvable":
            data["reason"] = one(rng, ["policy", "coordination", "unreasonable"])
        self.ev(
            "reply", at, self.handler(unit_id), unit_id, "replied", note=notes[result], data=data
        )
        a["replied_at"] = self.at
        ticket["result"] = result

    def evaluate(self) -> None:
        rng, ctx, ticket = self.rng, self.ctx, self.story.ticket
        at = self.later(2, 48)
        if rng.random() < 0.08:
            self.ev("evaluate", at, self.sc_user(ctx.callback_agents), ctx.service_centre_id,
                    "evaluated", note="多次回访未接通", data={"reached": False})  # fmt: skip
            ticket["solved"], ticket["satisfaction"] = None, None
            return
        p_solved = SOLVED_GIVEN_RESULT[ticket["result"]]
        solved = rng.random() < p_solved
        level = pick(rng, SATISFACTION_IF_SOLVED if solved else SATISFACTION_IF_NOT)
        self.ev("evaluate", at, self.sc_user(ctx.callback_agents), ctx.service_centre_id,
                "evaluated", data={"reached": True, "solved": solved, "satisfaction": level})  # fmt: skip
        ticket["solved"], ticket["satisfaction"] = solved, level


def daily_count(per_day: int, day: date, rng: random.Random) -> int:
    factor = WEEKDAY_FACTOR[day.weekday()] / (sum(WEEKDAY_FACTOR) / 7)
    return max(0, round(per_day * factor * rng.uniform(0.9, 1.1)))
