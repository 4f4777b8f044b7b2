"""The knowledge base on the call (issue 16, Deliver §3), through the app on both databases.

The intake's 知识库 panel lists the entries answering today for the request typed so far, with
the passage that matched (words in <mark>, everything else escaped); answering with an entry —
from the intake form (then=answer, answer.entry) or through the API's `answer` action — links
the entry's answering version to the order's event and counts its use once; an entry that does
not answer today is a 422 on the field `entry`; 报错 from the call is a flag for the entry's
owner. Every test runs at a fixed instant.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from conftest import auth, principal
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_auth import Console, app_of

from jiesu.db.engine import Database
from jiesu.knowledge import service
from jiesu.knowledge.call import pieces, query_of
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeFlag, KnowledgeUse
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.tickets.models import Event, Ticket

# A Wednesday morning in the city, whatever the hour the suite runs at.
NOW = datetime(2026, 11, 18, 10, 0, tzinfo=city_tz())
TODAY = NOW.date()
TICKETS = "/api/v1/tickets"

CARD = "KB-SB-001"
CARD_ANSWER = (
    "社会保障卡丢失后，请先拨打12333或通过“北京人社”小程序办理临时挂失；再持本人身份证到任一"
    "社保卡服务网点或合作银行网点申请补办，补卡期间医保结算可使用医保电子凭证。（演示内容）"
)
HEAT = "KB-GN-001"


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def unit_id(db: Database, code: str) -> int:
    with db.read() as s:
        found = s.scalar(select(Unit.id).where(Unit.code == code))
    assert found is not None, code
    return int(found)


def publish(db: Database, code: str, **content: Any) -> int:
    """An entry published by the centre (admin1), as the import and the demo do."""
    owner = content.pop("owner", "C-ZJW")
    demo = content.pop("demo", False)
    data = service.EntryContent(
        title=content.pop("title"),
        answer=content.pop("answer"),
        category_code=content.pop("category_code", None),
        owner_unit_id=unit_id(db, owner),
        **content,
    )
    with db.write() as s:
        entry = service.publish_direct(data, actor=principal(db, "admin1"), db_session=s,
                                       now=NOW, code=code, demo=demo)  # fmt: skip
        return int(entry.id)


@pytest.fixture
def base(db: Database, clock: Any) -> Database:
    """Two entries answering today: the social security card (a demo entry) and heating."""
    publish(db, CARD, title="社会保障卡丢失后如何挂失和补办", answer=CARD_ANSWER,
            keywords=["社保卡", "挂失", "补办"], demo=True,
            questions=["社保卡丢了怎么办", "社保卡掉了去哪里补"],
            valid_from=date(2025, 1, 1), valid_to=TODAY + timedelta(days=12))  # fmt: skip
    publish(db, HEAT, title="供暖季暖气不热怎么报修", category_code="0301", owner="C-RL",
            answer="供暖期内室温低于18℃的，可拨打供热单位的24小时服务电话报修，供热单位应在"
            "24小时内上门检测；检测不达标的，按规定退还相应的采暖费。（演示内容）",
            keywords=["暖气", "供暖", "室温"], questions=["暖气不热找谁", "家里暖气温度太低"])  # fmt: skip
    return db


def console(client: TestClient, username: str = "agent1") -> Console:
    return Console(app_of(client), username)


def entry_row(db: Database, code: str) -> KnowledgeEntry:
    with db.read() as s:
        entry = s.scalar(select(KnowledgeEntry).where(KnowledgeEntry.code == code))
        assert entry is not None
        s.expunge(entry)
        return entry


def uses_of(db: Database, code: str) -> list[tuple[int, int, int | None]]:
    with db.read() as s:
        return [
            (u.ticket_id, u.version_number, u.user_id)
            for u in s.scalars(
                select(KnowledgeUse)
                .join(KnowledgeEntry, KnowledgeEntry.id == KnowledgeUse.entry_id)
                .where(KnowledgeEntry.code == code)
                .order_by(KnowledgeUse.id)
            )
        ]


def answer_event(db: Database, ticket_id: int) -> Event:
    with db.read() as s:
        event = s.scalar(
            select(Event).where(Event.ticket_id == ticket_id, Event.action == "answer")
        )
        assert event is not None
        s.expunge(event)
        return event


# ---- the pure pieces ---------------------------------------------------------------------------


def test_the_query_is_the_requests_own_words_cut_short() -> None:
    assert query_of("", "  我的社保卡\n丢了 ") == "我的社保卡 丢了"
    assert query_of("社保卡丢了", "社保卡丢了，怎么补办？") == "社保卡丢了，怎么补办？"
    assert query_of("补办社保卡", "卡丢了") == "补办社保卡 卡丢了"
    assert len(query_of("", "很" * 5000)) == 200


def test_the_passage_is_cut_into_plain_and_marked_pieces() -> None:
    assert pieces("社保卡丢了怎么办", ((0, 3), (3, 5))) == [("社保卡丢了", True), ("怎么办", False)]
    assert pieces("abcdef", ((4, 99), (-3, 1), (2, 2))) == [
        ("a", True), ("bcd", False), ("ef", True)
    ]  # fmt: skip
    assert pieces("abc", ()) == [("abc", False)]
    assert pieces("", ((0, 4),)) == []


# ---- the panel ---------------------------------------------------------------------------------


def test_the_panel_lists_the_entry_for_a_typed_consultation_with_its_words_marked(
    client: TestClient, base: Database
) -> None:
    agent = console(client)
    r = agent.post("/console/intake/knowledge",
                   {"title": "", "content": "您好，我的社保卡丢了，想问一下怎么补办"})  # fmt: skip
    assert r.status_code == 200, r.text[:500]
    hits = re.findall(r'<li class="kb-hit" data-kb-code="([^"]+)"', r.text)
    assert hits and hits[0] == CARD, hits
    first = r.text.split('<li class="kb-hit"')[1]
    assert "社会保障卡丢失后如何挂失和补办" in first
    assert "第 1 版" in first and "小城市住房和城乡建设委员会" in first
    assert "演示内容" in first and '已用 <span class="kb-uses">0</span> 次' in first
    marked = re.findall(r"<mark>([^<]+)</mark>", first)
    assert marked and any("社保卡" in m or "补办" in m for m in marked), marked
    # It ends within 30 days: the panel says so; the whole answer travels for 用此条目答复.
    assert f"{(TODAY + timedelta(days=12)).isoformat()} 到期（剩 12 天）" in first
    assert "12333" in first and "data-kb-use" in first and "data-kb-flag" in first
    assert HEAT not in hits[:1]

    heat = agent.post("/console/intake/knowledge", {"content": "家里暖气一点都不热，温度太低了"})
    assert re.findall(r'data-kb-code="([^"]+)"', heat.text)[:1] == [HEAT]
    assert "到期" not in heat.text.split('<li class="kb-hit"')[1]  # no end date near


def test_the_panel_says_so_when_nothing_is_typed_or_nothing_matches(
    client: TestClient, base: Database
) -> None:
    agent = console(client)
    empty = agent.post("/console/intake/knowledge", {"title": "", "content": " "})
    assert empty.status_code == 200 and 'id="kb-empty"' in empty.text
    assert "kb-hit" not in empty.text
    none = agent.post("/console/intake/knowledge", {"content": "xyzzy qwerty 12345678"})
    assert none.status_code == 200 and 'id="kb-none"' in none.text


def test_the_panel_escapes_what_an_entry_holds(client: TestClient, base: Database) -> None:
    publish(base, "KB-XSS-001", title="<script>alert(1)</script>居住证签注办理",
            answer="居住证签注<img src=x onerror=alert(1)>：持居住证到社区服务站办理，一般当场办结。",
            keywords=["居住证", "签注"], questions=["居住证签注去哪办"])  # fmt: skip
    r = console(client).post("/console/intake/knowledge", {"content": "居住证签注去哪办理"})
    assert "KB-XSS-001" in r.text
    assert "<script>alert" not in r.text and "<img src=x" not in r.text
    assert "&lt;script&gt;" in r.text and "&lt;img src=x" in r.text


def test_the_panel_is_the_agents_and_needs_the_pages_token(
    client: TestClient, base: Database
) -> None:
    handler = console(client, "s11.handler")
    assert handler.post("/console/intake/knowledge", {"content": "社保卡丢了"}).status_code == 403
    agent = console(client)
    forged = agent.post("/console/intake/knowledge", {"content": "社保卡丢了"}, csrf="")
    assert forged.status_code == 403


def test_the_intake_page_has_the_panel_its_script_and_the_entry_field(
    client: TestClient, base: Database
) -> None:
    page = console(client).get("/console/intake")
    assert page.status_code == 200
    assert 'hx-post="/console/intake/knowledge"' in page.text
    assert "/static/knowledge.js" in page.text
    assert 'name="answer.entry"' in page.text and "data-kb-chosen" in page.text
    assert client.get("/static/knowledge.js").status_code == 200


# ---- answering with an entry --------------------------------------------------------------------


def test_the_intake_answers_with_the_entry_linked_and_counted(
    client: TestClient, base: Database
) -> None:
    agent = console(client)
    r = agent.post("/console/intake", {
        "phone": "13900001111", "channel": "phone", "request_type": "consult",
        "content": "我的社保卡丢了，想问怎么补办",
        "then": "answer", "answer.answer": CARD_ANSWER + "（已口头告知）", "answer.entry": CARD,
    })  # fmt: skip
    assert r.status_code == 303, r.text[:800]
    ticket_id = int(r.headers["location"].split("/")[3].split("?")[0])
    with base.read() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None and ticket.status == "answered"
        agent_id = principal(base, "agent1").user_id
    event = answer_event(base, ticket_id)
    assert event.data["entry"] == CARD and event.data["entry_version"] == 1
    assert event.data["answer"].endswith("（已口头告知）")  # the agent's own words are kept
    assert uses_of(base, CARD) == [(ticket_id, 1, agent_id)]
    card = entry_row(base, CARD)
    assert card.use_count == 1 and card.last_used_at == NOW

    # The ticket page names the answer's basis and links the entry's page.
    page = agent.get(f"/console/tickets/{ticket_id}").text
    basis = re.search(r'<dd id="answer-basis">(.*?)</dd>', page, re.S)
    assert basis, page[:2000]
    assert f'href="/console/knowledge/{CARD}"' in basis.group(1)
    assert "第 1 版" in basis.group(1) and "《社会保障卡丢失后如何挂失和补办》" in basis.group(1)
    assert f"{CARD} 第 1 版" in page  # the timeline's line for the answer


def test_the_api_answer_takes_the_entry_and_counts_each_order_once(
    client: TestClient, base: Database
) -> None:
    headers = auth(client, "agent1")
    ids = []
    for text in ("社保卡丢了怎么补", "社保卡被偷了去哪挂失"):
        made = client.post(TICKETS, json={"channel": "phone", "content": text,
                                          "request_type": "consult"}, headers=headers)  # fmt: skip
        assert made.status_code == 201, made.text
        r = client.post(f"{TICKETS}/{made.json()['id']}/actions/answer",
                        json={"answer": CARD_ANSWER, "entry": CARD}, headers=headers)  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "answered"
        ids.append(made.json()["id"])
    for ticket_id in ids:
        event = answer_event(base, ticket_id)
        assert (event.data["entry"], event.data["entry_version"]) == (CARD, 1)
    assert [u[0] for u in uses_of(base, CARD)] == ids
    assert entry_row(base, CARD).use_count == 2

    plain = client.post(TICKETS, json={"channel": "phone", "content": "咨询办事大厅几点开门"},
                        headers=headers).json()  # fmt: skip
    r = client.post(f"{TICKETS}/{plain['id']}/actions/answer",
                    json={"answer": "工作日上午九点开门。"}, headers=headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert "entry" not in answer_event(base, plain["id"]).data
    assert entry_row(base, CARD).use_count == 2 and entry_row(base, HEAT).use_count == 0


def test_a_new_version_answers_as_itself(client: TestClient, base: Database) -> None:
    publish(base, CARD, title="社会保障卡丢失后如何挂失和补办", answer=CARD_ANSWER + "补卡免费。",
            keywords=["社保卡", "挂失", "补办"], questions=["社保卡丢了怎么办"],
            change_note="补卡免费")  # fmt: skip
    headers = auth(client, "agent1")
    made = client.post(TICKETS, json={"channel": "phone", "content": "社保卡丢了补办收费吗"},
                       headers=headers).json()  # fmt: skip
    r = client.post(f"{TICKETS}/{made['id']}/actions/answer",
                    json={"answer": "补卡免费。", "entry": CARD}, headers=headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert answer_event(base, made["id"]).data["entry_version"] == 2
    assert uses_of(base, CARD)[0][1] == 2


def _refused(client: TestClient, headers: dict[str, str], entry: Any) -> dict[str, Any]:
    made = client.post(TICKETS, json={"channel": "phone", "content": "社保卡丢了怎么补办"},
                       headers=headers).json()  # fmt: skip
    r = client.post(f"{TICKETS}/{made['id']}/actions/answer",
                    json={"answer": CARD_ANSWER, "entry": entry}, headers=headers)  # fmt: skip
    assert r.status_code == 422, (entry, r.status_code, r.text)
    again = client.get(f"{TICKETS}/{made['id']}", headers=headers).json()
    assert again["status"] == "received"  # nothing taken
    return dict(r.json())


def test_an_entry_that_does_not_answer_today_is_refused_on_the_field_entry(
    client: TestClient, base: Database, clock: Any
) -> None:
    headers = auth(client, "agent1")
    for code in ("KB-NONE-404", 7, "很" * 40):
        body = _refused(client, headers, code)
        assert body["field"] == "entry", body
    with base.write() as s:
        heat = s.scalar(select(KnowledgeEntry.id).where(KnowledgeEntry.code == HEAT))
        service.withdraw(heat, actor=principal(base, "admin1"), db_session=s, now=NOW,
                         note="政策调整，暂停使用")  # fmt: skip
    assert _refused(client, headers, HEAT)["field"] == "entry"
    # The card's last valid day still answers; the day after, it does not.
    clock.move_to(datetime.combine(TODAY + timedelta(days=12), datetime.min.time(), city_tz())
                  + timedelta(hours=23))  # fmt: skip
    headers = auth(client, "agent1")
    made = client.post(TICKETS, json={"channel": "phone", "content": "社保卡丢了"},
                       headers=headers).json()  # fmt: skip
    ok = client.post(f"{TICKETS}/{made['id']}/actions/answer",
                     json={"answer": CARD_ANSWER, "entry": CARD}, headers=headers)  # fmt: skip
    assert ok.status_code == 200, ok.text
    clock.shift(timedelta(hours=2))  # 01:00 the next day in the city
    headers = auth(client, "agent1")
    assert _refused(client, headers, CARD)["field"] == "entry"
    assert len(uses_of(base, CARD)) == 1 and entry_row(base, CARD).use_count == 1


def test_the_intake_keeps_what_was_typed_when_the_entry_is_refused(
    client: TestClient, base: Database
) -> None:
    agent = console(client)
    r = agent.post("/console/intake", {
        "phone": "13900001111", "channel": "phone", "content": "我的社保卡丢了，想问怎么补办",
        "then": "answer", "answer.answer": CARD_ANSWER, "answer.entry": "KB-NONE-404",
    })  # fmt: skip
    assert r.status_code == 422, r.text[:500]
    assert "知识库" in r.text and "KB-NONE-404" in r.text
    assert 'value="KB-NONE-404"' in r.text  # the field keeps it, for the agent to correct
    assert 'from:#title, load"' in r.text  # and the panel searches again for what was typed
    with base.read() as s:
        assert s.scalar(select(Ticket.id)) is None  # nothing was taken in
    assert uses_of(base, CARD) == []


# ---- 报错 from the call ------------------------------------------------------------------------


def test_a_flag_from_the_call_goes_to_the_owner(client: TestClient, base: Database) -> None:
    agent = console(client)
    htmx = {"HX-Request": "true"}
    r = agent.post(f"/console/knowledge/{CARD}/flags",
                   {"reason": "outdated", "note": "挂失电话已改为12345转接"}, headers=htmx)  # fmt: skip
    assert r.status_code == 200, r.text[:500]
    assert "已报错" in r.text and "政策已过时" in r.text and "小城市住房和城乡建设委员会" in r.text
    with base.read() as s:
        flags = s.scalars(select(KnowledgeFlag)).all()
        assert [(f.reason, f.note, f.status, f.version_number, f.ticket_id) for f in flags] == [
            ("outdated", "挂失电话已改为12345转接", "open", 1, None)
        ]
        assert flags[0].raised_by_id == principal(base, "agent1").user_id
    assert entry_row(base, CARD).open_flags == 1

    # Why not, in the panel: no reason, an unknown entry, a note too long.
    for url, form, words in (
        (f"/console/knowledge/{CARD}/flags", {"reason": "", "note": ""}, "请选择报错原因"),
        ("/console/knowledge/KB-NONE-404/flags", {"reason": "wrong"}, "没有这个知识库条目"),
        (f"/console/knowledge/{CARD}/flags", {"reason": "wrong", "note": "长" * 1001}, "1000"),
    ):
        refused = agent.post(url, form, headers=htmx)
        assert refused.status_code == 200 and words in refused.text, refused.text[:300]
        assert 'role="alert"' in refused.text and "已报错" not in refused.text
    plain = agent.post("/console/knowledge/KB-NONE-404/flags", {"reason": "wrong"})
    assert plain.status_code == 404
    assert entry_row(base, CARD).open_flags == 1

    # Another role reports too (knowledge.flag is everyone's); a plain form goes to the entry.
    handler = console(client, "s11.handler")
    r = handler.post(f"/console/knowledge/{CARD}/flags", {"reason": "unclear", "note": ""})
    assert r.status_code == 303 and r.headers["location"] == f"/console/knowledge/{CARD}"
    assert entry_row(base, CARD).open_flags == 2


def test_a_flag_names_an_order_only_one_the_agent_sees(client: TestClient, base: Database) -> None:
    made = client.post(TICKETS, json={"channel": "phone", "content": "社保卡丢了怎么补办"},
                       headers=auth(client, "agent1")).json()  # fmt: skip
    htmx = {"HX-Request": "true"}
    agent = console(client)
    r = agent.post(f"/console/knowledge/{CARD}/flags",
                   {"reason": "wrong", "ticket_id": str(made["id"])}, headers=htmx)  # fmt: skip
    assert "已报错" in r.text, r.text[:300]
    handler = console(client, "s11.handler")  # the order is not theirs to see
    r = handler.post(f"/console/knowledge/{CARD}/flags",
                     {"reason": "wrong", "ticket_id": str(made["id"])}, headers=htmx)  # fmt: skip
    assert "已报错" not in r.text and 'role="alert"' in r.text
    with base.read() as s:
        assert [f.ticket_id for f in s.scalars(select(KnowledgeFlag))] == [made["id"]]
