"""The knowledge base's console pages (知识库): who may open each, the draft → submit → review →
publish flow through the forms, "who changed what" on the entry page, the owner's page (flags,
returns, expiring entries) and the export link. Every test runs on SQLite and PostgreSQL, at a
fixed instant."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import time_machine
from conftest import principal
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_auth import Console, app_of

from jiesu.access.permissions import PERMISSIONS, ROLES
from jiesu.db.engine import Database
from jiesu.knowledge import service
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeFlag, KnowledgeVersion
from jiesu.org.models import Unit

NOW = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)  # 10:00 in the city
TODAY = date(2026, 11, 10)
ROLE_USER = {
    "agent": "agent1",
    "dispatcher": "dispatcher1",
    "handler": "s11.handler",
    "unit_admin": "s11.admin",
    "callback_agent": "callback1",
    "supervisor": "supervisor1",
    "analyst": "analyst1",
    "admin": "admin1",
}
ANSWER = "社会保障卡丢失后，请先拨打服务电话或到银行网点办理临时挂失，再携带身份证到社保服务网点申请补办。"


@pytest.fixture
def clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=True):
        yield


def _unit(db: Database, code: str) -> int:
    with db.read() as s:
        uid = s.scalar(select(Unit.id).where(Unit.code == code))
        assert uid is not None
        return uid


def content(db: Database, **more: object) -> service.EntryContent:
    base: dict[str, object] = {
        "title": "社会保障卡丢失后如何挂失和补办",
        "answer": ANSWER,
        "category_code": "0101",
        "owner_unit_id": _unit(db, "S11"),
        "keywords": ["社保卡", "挂失"],
        "questions": ["社保卡丢了怎么办"],
        "valid_from": date(2026, 1, 1),
        "valid_to": date(2027, 12, 31),
        "source": "《社会保障卡管理办法》（测试）",
        "link": "https://example.org/sbk",
        "change_note": "新建",
    }
    base.update(more)
    return service.EntryContent(**base)  # type: ignore[arg-type]


def published(db: Database, code: str = "KB-T-001", **more: object) -> str:
    """An entry of 东一街道 (S11), published by the centre."""
    with db.write() as s:
        entry = service.publish_direct(content(db, **more), actor=principal(db, "admin1"),
                                       db_session=s, now=NOW, code=code)  # fmt: skip
        return entry.code


def csrf(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


# ---- who may open what ------------------------------------------------------------------------


def test_each_page_opens_for_the_roles_that_may_and_is_refused_to_the_others(
    client: TestClient, db: Database, clock: None
) -> None:
    code = published(db)
    pages = {
        "/console/knowledge": "knowledge.read",
        f"/console/knowledge/{code}": "knowledge.read",
        "/console/knowledge/export.xlsx": "knowledge.read",
        "/console/knowledge/new": "knowledge.edit",
        f"/console/knowledge/{code}/edit": "knowledge.edit",
        "/console/knowledge/mine": "knowledge.edit",
        "/console/knowledge/review": "knowledge.review",
        "/console/knowledge/import": "knowledge.import",
    }
    app = app_of(client)
    wrong = []
    for role in ROLES:
        browser = Console(app, ROLE_USER[role])
        for url, permission in pages.items():
            r = browser.get(url)
            expected = 200 if role in PERMISSIONS[permission] else 403
            if r.status_code != expected:
                wrong.append(f"{role} {url}: {r.status_code}, expected {expected}")
            elif expected == 403 and "没有权限" not in r.text:
                wrong.append(f"{role} {url}: not the 403 page")
        home = browser.get("/console/knowledge").text
        if 'href="/console/knowledge"' not in home:  # the nav link, for every role
            wrong.append(f"{role}: no 知识库 in the navigation")
    assert not wrong, "\n".join(wrong)
    anonymous = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    for url in pages:
        r = anonymous.get(url)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), url


def test_another_departments_user_neither_edits_nor_sees_drafts(
    client: TestClient, db: Database, clock: None
) -> None:
    code = published(db)
    with db.write() as s:  # a draft of S11 nobody else below the centre may see
        draft = service.create_entry(content(db, title="东一街道的内部草稿条目"),
                                     actor=principal(db, "s11.handler"), db_session=s, now=NOW)  # fmt: skip
        draft_code = draft.code
    other = Console(app_of(client), "s12.handler")
    assert other.get(f"/console/knowledge/{code}").status_code == 200
    assert other.get(f"/console/knowledge/{code}/edit").status_code == 403
    r = other.post(f"/console/knowledge/{code}/edit", {"title": "改一改", "answer": ANSWER})
    assert r.status_code == 403
    assert other.get(f"/console/knowledge/{draft_code}").status_code == 404
    assert draft_code not in other.get("/console/knowledge").text
    agent = Console(app_of(client), "agent1")
    assert agent.get(f"/console/knowledge/{draft_code}").status_code == 404
    mine = Console(app_of(client), "s11.handler").get("/console/knowledge?status=draft")
    assert draft_code in mine.text and code not in mine.text
    with db.read() as s:
        assert s.scalar(select(KnowledgeEntry.title).where(KnowledgeEntry.code == code)) == (
            "社会保障卡丢失后如何挂失和补办"
        )


# ---- the flow through the pages ---------------------------------------------------------------


def test_draft_submit_return_publish_through_the_pages_and_who_changed_what(
    client: TestClient, db: Database, clock: None
) -> None:
    app = app_of(client)
    handler, centre = Console(app, "s11.handler"), Console(app, "supervisor1")
    form = {
        "title": "居住证到期了怎么续签", "answer": "居住证有效期一年，到期前三十日内持本人身份证到居住地派出所或社区服务站申请签注。",
        "category_code": "0101", "keywords": "居住证\n签注", "questions": "居住证过期了咋办\n居住证怎么续",
        "valid_from": "2026-01-01", "valid_to": "2027-06-30", "source": "《居住证暂行条例》",
        "link": "https://example.org/jzz", "change_note": "首次起草",
    }  # fmt: skip
    bad = handler.post("/console/knowledge/new", {**form, "valid_to": "明年"})
    assert bad.status_code == 422 and "失效日期" in bad.text
    assert "居住证过期了咋办" in bad.text  # what was typed comes back
    r = handler.post("/console/knowledge/new", form)
    assert r.status_code == 303, r.text[:500]
    url = r.headers["location"].split("?")[0]
    code = url.rsplit("/", 1)[1]
    page = handler.get(url).text
    assert (
        "草稿" in page and "提交审核" in page and "发布" not in re.sub(r"未发布|发布前", "", page)
    )
    assert handler.post(f"{url}/submit").status_code == 303
    review = centre.get("/console/knowledge/review").text
    assert code in review and "居住证到期了怎么续签" in review
    assert '<span class="badge" id="kb-review-count">1</span>' in review
    # a return needs its note; the handler sees the note
    assert centre.post(f"{url}/return", {"note": ""}).status_code == 422
    assert centre.post(f"{url}/return", {"note": "请写明办理地点的开放时间", "back": "review"}
                       ).headers["location"] == "/console/knowledge/review?done=return"  # fmt: skip
    mine = handler.get("/console/knowledge/mine").text
    assert "请写明办理地点的开放时间" in mine and code in mine
    assert '<span class="badge" id="kb-mine-count">1</span>' in mine  # the returned version
    assert "kb-mine-count" not in Console(app, "s12.handler").get("/console/knowledge/mine").text
    edited = {**form, "answer": form["answer"] + "派出所工作日 9:00-17:00 开放。",
              "keywords": "居住证\n续签", "change_note": "补充开放时间"}  # fmt: skip
    assert handler.post(f"{url}/edit", edited).status_code == 303
    assert handler.post(f"{url}/submit").status_code == 303
    # a handler may not publish (403), the centre does
    assert handler.post(f"{url}/publish").status_code == 403
    assert centre.post(f"{url}/publish", {"note": "同意"}).status_code == 303
    with db.read() as s:
        entry = s.scalar(select(KnowledgeEntry).where(KnowledgeEntry.code == code))
        assert entry is not None and entry.status == "published"
    # a second round: the published version answers while the new one is under review
    v2 = {
        **edited,
        "title": "居住证到期如何续签（签注）",
        "keywords": "居住证\n签注到期",
        "change_note": "标题更通俗",
    }
    assert handler.post(f"{url}/edit", v2).status_code == 303
    assert handler.post(f"{url}/submit").status_code == 303
    page = centre.get(url).text
    assert "居住证到期了怎么续签" in page.split('id="kb-pending"')[0]  # the answering version
    assert "待审核" in page
    assert centre.post(f"{url}/publish").status_code == 303
    page = Console(app, "agent1").get(url).text
    assert "居住证到期如何续签（签注）" in page
    history = page.split('id="kb-versions"')[1]
    # who changed what: the author, the reviewer, the change note and the fields
    assert "东一承办人" in history and "督办员丁" in history
    assert "标题更通俗" in history and "补充开放时间" in history
    assert "<del>居住证到期了怎么续签</del>" in history
    assert "<ins>居住证到期如何续签（签注）</ins>" in history
    assert "<ins>签注到期</ins>" in history and "<del>续签</del>" in history


def test_withdraw_needs_a_note_and_takes_the_entry_off(
    client: TestClient, db: Database, clock: None
) -> None:
    code = published(db)
    centre = Console(app_of(client), "admin1")
    assert centre.post(f"/console/knowledge/{code}/withdraw", {"note": ""}).status_code == 422
    r = centre.post(f"/console/knowledge/{code}/withdraw", {"note": "政策已废止"})
    assert r.status_code == 303
    with db.read() as s:
        assert s.scalar(select(KnowledgeEntry.status).where(KnowledgeEntry.code == code)) == (
            "withdrawn"
        )
    agent = Console(app_of(client), "agent1")
    assert code not in agent.get("/console/knowledge").text


def test_the_owner_resolves_a_flag_and_sees_expiring_entries(
    client: TestClient, db: Database, clock: None
) -> None:
    code = published(db, valid_to=date(2026, 11, 30))
    with db.write() as s:
        entry = service.get_entry(code, actor=principal(db, "agent1"), db_session=s)
        flag = service.raise_flag(entry.id, reason="outdated", note="补办费用已取消",
                                  ticket_id=None, actor=principal(db, "agent1"), db_session=s,
                                  now=NOW)  # fmt: skip
        flag_id = flag.id
    owner = Console(app_of(client), "s11.admin")
    mine = owner.get("/console/knowledge/mine").text
    expiring = mine.split('id="kb-expiring"')[1]
    assert code in expiring and "20 天" in expiring
    assert "补办费用已取消" in mine.split('id="kb-open-flags"')[1]
    assert owner.post(f"/console/knowledge/flags/{flag_id}/resolve",
                      {"status": "fixed", "note": ""}).status_code == 422  # fmt: skip
    r = owner.post(f"/console/knowledge/flags/{flag_id}/resolve",
                   {"status": "fixed", "note": "已改", "back": "/console/knowledge/mine"})  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/console/knowledge/mine"
    with db.read() as s:
        row = s.get(KnowledgeFlag, flag_id)
        assert row is not None and row.status == "fixed" and row.resolution_note == "已改"
    other = Console(app_of(client), "s12.handler")
    assert other.get("/console/knowledge/mine").status_code == 200
    assert code not in other.get("/console/knowledge/mine").text


def test_the_list_filters_and_pages(client: TestClient, db: Database, clock: None) -> None:
    for i in range(25):
        published(db, code=f"KB-T-{i:03d}", title=f"测试条目第{i:02d}号的办理指南",
                  valid_to=date(2026, 12, 1) if i < 3 else date(2028, 1, 1))  # fmt: skip
    browser = Console(app_of(client), "agent1")
    first = browser.get("/console/knowledge").text
    assert "共 25 条" in first and "第 1 / 2 页" in first
    assert first.count("<tr>") - 1 == 20
    soon = browser.get("/console/knowledge?expiring=1").text
    assert "共 3 条" in soon
    assert "共 0 条" not in browser.get("/console/knowledge?owner=S11").text
    assert "没有符合条件" in browser.get("/console/knowledge?owner=S12").text
    # the status filter is for those who work on entries: ignored for an agent
    assert "共 25 条" in browser.get("/console/knowledge?status=draft").text
    assert browser.get("/console/knowledge?page=abc").status_code == 422


def test_the_list_searches_as_callers_speak(client: TestClient, db: Database, clock: None) -> None:
    code = published(db)
    published(db, code="KB-T-900", title="供暖期居民室温达不到标准怎么办",
              answer="供暖期内居民室温应不低于十八摄氏度，达不到的可向供热单位报修，供热单位应在二十四小时内上门。",
              keywords=["暖气", "室温"], questions=["暖气不热找谁"])  # fmt: skip
    page = Console(app_of(client), "agent1").get("/console/knowledge?q=社保卡丢了").text
    rows = re.findall(r'<td class="num"><a href="/console/knowledge/([^"]+)">', page)
    assert rows and rows[0] == code  # the best match first (relevance, not the list's order)
    assert "<mark>" in page.split('id="kb-list"')[1]


def test_an_unknown_entry_is_a_404_page(client: TestClient, db: Database, clock: None) -> None:
    browser = Console(app_of(client), "agent1")
    assert browser.get("/console/knowledge/KB-NOPE").status_code == 404
    assert browser.get("/console/knowledge/%25%27").status_code == 404
    with db.read() as s:
        assert s.scalar(select(KnowledgeVersion.id)) is None
