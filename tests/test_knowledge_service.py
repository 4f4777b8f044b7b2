"""The knowledge base's service on SQLite and PostgreSQL: entries through their workflow, the
published version answering while the next is under review, who may not, expiry and the 30-day
warning at pinned dates, uses counted once per order, flags raised and resolved.

Every clock is pinned: services get `now=` / `today=`; nothing reads the real day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import principal
from sqlalchemy import select, update

from jiesu.access.policy import Principal
from jiesu.auth.models import AuditLog
from jiesu.auth.passwords import hash_password
from jiesu.db.engine import Database
from jiesu.errors import Conflict, Forbidden, Invalid, NotFound
from jiesu.knowledge import search, service
from jiesu.knowledge.models import (
    KnowledgeEntry,
    KnowledgeFlag,
    KnowledgeSuggestion,
    KnowledgeUse,
    KnowledgeVersion,
)
from jiesu.knowledge.service import EntryContent
from jiesu.knowledge.uses import record_use, resolve_entry
from jiesu.org.models import Unit, User
from jiesu.tickets.service import create_ticket
from jiesu.tickets.shapes import TicketCreate

NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)  # 10:00 in Beijing, 2026-06-01
TODAY = date(2026, 6, 1)
ANSWER = (
    "社会保障卡丢失后，请立即拨打服务电话或到任一社保卡服务网点办理挂失，再携带身份证办理补卡。"
)


def _user(db: Database, username: str, role: str, unit_code: str) -> Principal:
    with db.write() as s:
        unit = s.scalar(select(Unit).where(Unit.code == unit_code))
        assert unit is not None
        s.add(User(username=username, name=username, role=role, unit_id=unit.id,
                   password_hash=hash_password("secret123")))  # fmt: skip
    return principal(db, username)


@pytest.fixture
def city(db: Database) -> dict[str, Principal]:
    """The tiny city's centre and agent, and handlers of two departments."""
    return {
        "zjw": _user(db, "zjw.handler", "handler", "C-ZJW"),
        "zjw2": _user(db, "zjw.other", "unit_admin", "C-ZJW"),
        "jw": _user(db, "jw.handler", "handler", "D1-JW"),
        "supervisor": principal(db, "supervisor1"),
        "admin": principal(db, "admin1"),
        "agent": principal(db, "agent1"),
    }


def _content(owner: Principal, **changes: object) -> EntryContent:
    data: dict[str, object] = {
        "title": "社保卡丢了如何挂失和补办",
        "answer": ANSWER,
        "category_code": "0101",
        "owner_unit_id": owner.unit_id,
        "keywords": ["社保卡", "挂失"],
        "questions": ["社保卡丢了怎么办"],
        "valid_from": date(2026, 1, 1),
        "valid_to": date(2027, 12, 31),
        "source": "《社会保障卡管理办法》（测试）",
        "link": "https://example.org/sbk",
        "change_note": None,
    }
    data.update(changes)
    return EntryContent(**data)  # type: ignore[arg-type]


def _published(db: Database, city: dict[str, Principal], **changes: object) -> int:
    """A new entry of 住建委, drafted, submitted and published; its id."""
    with db.write() as s:
        entry = service.create_entry(_content(city["zjw"], **changes), actor=city["zjw"],
                                     db_session=s, now=NOW)  # fmt: skip
        service.submit(entry.id, actor=city["zjw"], db_session=s, now=NOW)
        service.publish(entry.id, actor=city["supervisor"], db_session=s, now=NOW)
        return entry.id


def _codes(db: Database, query: str, today: date = TODAY) -> list[str]:
    with db.read() as s:
        return [h.code for h in search.search(query, db_session=s, today=today, limit=10)]


# ---- the workflow --------------------------------------------------------------------------


def test_a_new_entry_is_a_draft_with_its_first_version_and_a_code(
    db: Database, city: dict[str, Principal]
) -> None:
    with db.write() as s:
        entry = service.create_entry(_content(city["zjw"]), actor=city["zjw"], db_session=s,
                                     now=NOW)  # fmt: skip
        second = service.create_entry(_content(city["zjw"], title="社保卡密码忘了怎么办"),
                                      actor=city["zjw"], db_session=s, now=NOW)  # fmt: skip
        assert entry.code == f"KB-{entry.id:06d}" and second.code == f"KB-{second.id:06d}"
        assert entry.status == "draft" and entry.revision == 1
        assert entry.published_version_id is None
        (version,) = service.versions(entry.id, db_session=s)
        assert (version.number, version.state, version.author_id) == (
            1,
            "draft",
            city["zjw"].user_id,
        )
        assert entry.pending_version_id == version.id
        assert entry.title == version.title  # never published: the draft's title shows
        assert service.answering_version(entry, db_session=s, today=TODAY) is None
        entry_id = entry.id
    with db.read() as s:
        # A draft: its unit and the centre see it, nobody else.
        assert service.get_entry(entry_id, actor=city["zjw2"], db_session=s).id == entry_id
        assert service.get_entry(entry_id, actor=city["supervisor"], db_session=s).id == entry_id
        for who in ("agent", "jw"):
            with pytest.raises(NotFound):
                service.get_entry(entry_id, actor=city[who], db_session=s)
    assert _codes(db, "社保卡丢了如何挂失和补办") == []  # not searchable before publication


def test_draft_submit_publish_answers_and_is_found_and_audited(
    db: Database, city: dict[str, Principal]
) -> None:
    entry_id = _published(db, city)
    with db.read() as s:
        entry = s.get(KnowledgeEntry, entry_id)
        assert entry is not None
        assert entry.status == "published" and entry.pending_version_id is None
        version = service.answering_version(entry, db_session=s, today=TODAY)
        assert version is not None and (version.number, version.state) == (1, "published")
        assert version.reviewed_by_id == city["supervisor"].user_id
        assert entry.published_at == NOW and version.published_at == NOW
        assert entry.revision == 3  # created, submitted, published
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "kb_publish")).all()
        assert [(a.username, a.detail["entry"], a.detail["version"]) for a in audit] == [
            ("supervisor1", entry.code, 1)
        ]
        code = entry.code
        # Everyone reads it now.
        assert service.get_entry(code, actor=city["agent"], db_session=s).id == entry_id
        assert resolve_entry(code, db_session=s, today=TODAY) == (entry_id, 1)
    assert _codes(db, "社保卡丢了如何挂失和补办")[:1] == [code]


def test_the_published_version_keeps_answering_while_the_next_is_reviewed_and_returned(
    db: Database, city: dict[str, Principal]
) -> None:
    entry_id = _published(db, city)
    new_answer = ANSWER + "补卡期间可先使用电子社保卡。"
    with db.write() as s:
        v2 = service.save_draft(entry_id, _content(city["zjw"], title="社保卡丢失的挂失与补办",
                                                   answer=new_answer, change_note="加电子社保卡"),
                                actor=city["zjw"], db_session=s, now=NOW)  # fmt: skip
        assert (v2.number, v2.state) == (2, "draft")
        service.submit(entry_id, actor=city["zjw"], db_session=s, now=NOW)
    with db.read() as s:
        entry = s.get(KnowledgeEntry, entry_id)
        assert entry is not None
        answering = service.answering_version(entry, db_session=s, today=TODAY)
        assert answering is not None and (answering.number, answering.answer) == (1, ANSWER)
        assert entry.title == "社保卡丢了如何挂失和补办"  # the published version's, not v2's
        code = entry.code
        assert resolve_entry(code, db_session=s, today=TODAY) == (entry_id, 1)
    assert _codes(db, "社保卡丢了如何挂失和补办")[:1] == [code]  # search still answers v1
    with db.write() as s:
        with pytest.raises(Invalid) as no_note:
            service.return_version(entry_id, actor=city["supervisor"], db_session=s, now=NOW,
                                   note="  ")  # fmt: skip
        assert no_note.value.field == "note"
    with db.write() as s:
        back = service.return_version(entry_id, actor=city["supervisor"], db_session=s, now=NOW,
                                      note="请注明电子社保卡的申领方式")  # fmt: skip
        assert (back.state, back.review_note) == ("returned", "请注明电子社保卡的申领方式")
        assert s.scalar(select(AuditLog.detail).where(AuditLog.action == "kb_return")) == {
            "entry": code, "version": 2, "note": "请注明电子社保卡的申领方式",
        }  # fmt: skip
    with db.write() as s:
        again = service.save_draft(entry_id, _content(city["zjw"], title="社保卡丢失的挂失与补办",
                                                      answer=new_answer + "可在手机上申领。"),
                                   actor=city["zjw"], db_session=s, now=NOW)  # fmt: skip
        assert (again.number, again.state) == (2, "draft")  # the same version, reworked
        service.submit(entry_id, actor=city["zjw"], db_session=s, now=NOW)
        service.publish(entry_id, actor=city["supervisor"], db_session=s, now=NOW, note="同意")
    with db.read() as s:
        entry = s.get(KnowledgeEntry, entry_id)
        assert entry is not None
        states = [(v.number, v.state) for v in service.versions(entry_id, db_session=s)]
        assert states == [(1, "superseded"), (2, "published")]
        assert entry.title == "社保卡丢失的挂失与补办"  # the columns follow the published one
        assert resolve_entry(entry.code, db_session=s, today=TODAY) == (entry_id, 2)
        changes = service.version_changes(entry_id, db_session=s)
        assert [c.field for c in changes[1][1]] == ["title", "answer"]


def test_a_publish_is_refused_for_what_cannot_answer(
    db: Database, city: dict[str, Principal]
) -> None:
    cases = [
        ({"title": "社保"}, "title"),
        ({"answer": "请到网点办理。"}, "answer"),
        ({"valid_from": date(2026, 5, 1), "valid_to": date(2026, 4, 30)}, "valid_to"),
        ({"valid_to": date(2026, 5, 31)}, "valid_to"),  # ended yesterday
        ({"category_code": "9999"}, "category_code"),
        ({"owner_unit_id": 999_999}, "owner_unit_id"),
    ]
    for changes, field in cases:
        with db.write() as s:
            with pytest.raises(Invalid) as caught:
                entry = service.create_entry(_content(city["admin"], **changes),
                                             actor=city["admin"], db_session=s, now=NOW)  # fmt: skip
                service.submit(entry.id, actor=city["admin"], db_session=s, now=NOW)
            assert caught.value.field == field, changes


def test_who_may_not(db: Database, city: dict[str, Principal]) -> None:
    entry_id = _published(db, city)
    with db.write() as s:
        # Another department edits neither this entry nor for this department.
        with pytest.raises(Forbidden):
            service.save_draft(entry_id, _content(city["jw"]), actor=city["jw"], db_session=s,
                               now=NOW)  # fmt: skip
        with pytest.raises(Forbidden):
            service.create_entry(_content(city["zjw"]), actor=city["jw"], db_session=s, now=NOW)
        # An agent edits nothing; a department gives no entry away.
        with pytest.raises(Forbidden):
            service.save_draft(entry_id, _content(city["zjw"]), actor=city["agent"], db_session=s,
                               now=NOW)  # fmt: skip
        with pytest.raises(Forbidden):
            service.save_draft(entry_id, _content(city["jw"]), actor=city["zjw"], db_session=s,
                               now=NOW)  # fmt: skip
        service.save_draft(entry_id, _content(city["zjw"], answer=ANSWER + "（新）"),
                           actor=city["zjw"], db_session=s, now=NOW)  # fmt: skip
        service.submit(entry_id, actor=city["zjw"], db_session=s, now=NOW)
    with db.write() as s:
        # A department does not review, even its own entry, nor withdraw it.
        with pytest.raises(Forbidden):
            service.publish(entry_id, actor=city["zjw"], db_session=s, now=NOW)
        with pytest.raises(Forbidden):
            service.return_version(entry_id, actor=city["zjw"], db_session=s, now=NOW, note="x")
        with pytest.raises(Forbidden):
            service.withdraw(entry_id, actor=city["zjw"], db_session=s, now=NOW, note="x")
        # Only its author takes a submitted version back; nobody edits it while it is reviewed.
        with pytest.raises(Forbidden):
            service.recall(entry_id, actor=city["zjw2"], db_session=s, now=NOW)
        with pytest.raises(Conflict):
            service.save_draft(entry_id, _content(city["zjw"]), actor=city["zjw"], db_session=s,
                               now=NOW)  # fmt: skip
    with db.write() as s:
        back = service.recall(entry_id, actor=city["zjw"], db_session=s, now=NOW)
        assert back.state == "draft" and back.submitted_at is None
        with pytest.raises(Conflict):
            service.publish(entry_id, actor=city["supervisor"], db_session=s, now=NOW)


def test_discarding_a_draft(db: Database, city: dict[str, Principal]) -> None:
    entry_id = _published(db, city)
    with db.write() as s:
        service.save_draft(entry_id, _content(city["zjw"], answer=ANSWER + "（草稿）"),
                           actor=city["zjw"], db_session=s, now=NOW)  # fmt: skip
        service.discard_draft(entry_id, actor=city["zjw"], db_session=s, now=NOW)
        entry = s.get(KnowledgeEntry, entry_id)
        assert entry is not None and entry.pending_version_id is None
        assert [v.state for v in service.versions(entry_id, db_session=s)] == [
            "published", "discarded",
        ]  # fmt: skip
        with pytest.raises(Conflict):
            service.discard_draft(entry_id, actor=city["zjw"], db_session=s, now=NOW)
        # An entry never published goes with its draft; its suggestion is open again.
        fresh = service.create_entry(_content(city["zjw"]), actor=city["zjw"], db_session=s,
                                     now=NOW)  # fmt: skip
        s.add(KnowledgeSuggestion(key="k1", title="社保卡", period_start=TODAY, period_end=TODAY,
                                  status="drafted", entry_id=fresh.id))  # fmt: skip
        s.flush()
        fresh_id = fresh.id
        service.discard_draft(fresh_id, actor=city["zjw"], db_session=s, now=NOW)
    with db.read() as s:
        assert s.get(KnowledgeEntry, fresh_id) is None
        assert (
            s.scalars(select(KnowledgeVersion).where(KnowledgeVersion.entry_id == fresh_id)).all()
            == []
        )
        suggestion = s.scalar(select(KnowledgeSuggestion))
        assert suggestion is not None and (suggestion.status, suggestion.entry_id) == ("open", None)


def test_withdraw_takes_the_entry_off_and_a_new_version_brings_it_back(
    db: Database, city: dict[str, Principal]
) -> None:
    entry_id = _published(db, city)
    with db.write() as s:
        entry = service.withdraw(entry_id, actor=city["supervisor"], db_session=s, now=NOW,
                                 note="政策已废止")  # fmt: skip
        code = entry.code
        assert entry.status == "withdrawn"
        assert service.answering_version(entry, db_session=s, today=TODAY) is None
        with pytest.raises(Invalid) as caught:
            resolve_entry(code, db_session=s, today=TODAY)
        assert caught.value.field == "entry"
        with pytest.raises(Conflict):
            service.withdraw(entry_id, actor=city["supervisor"], db_session=s, now=NOW, note=None)
    assert code not in _codes(db, "社保卡丢了如何挂失和补办")
    with db.read() as s:
        with pytest.raises(NotFound):  # no longer everyone's
            service.get_entry(code, actor=city["agent"], db_session=s)
        assert s.scalar(select(AuditLog.detail).where(AuditLog.action == "kb_withdraw")) == {
            "entry": code, "note": "政策已废止",
        }  # fmt: skip
    with db.write() as s:
        service.save_draft(entry_id, _content(city["zjw"], answer=ANSWER + "（恢复）"),
                           actor=city["zjw"], db_session=s, now=NOW)  # fmt: skip
        service.submit(entry_id, actor=city["zjw"], db_session=s, now=NOW)
        service.publish(entry_id, actor=city["supervisor"], db_session=s, now=NOW)
        assert resolve_entry(code, db_session=s, today=TODAY) == (entry_id, 2)
    assert _codes(db, "社保卡丢了如何挂失和补办")[:1] == [code]


def test_publish_direct_creates_updates_and_changes_nothing_for_the_same_content(
    db: Database, city: dict[str, Principal]
) -> None:
    admin = city["admin"]
    with db.write() as s:
        with pytest.raises(Forbidden):
            service.publish_direct(_content(city["zjw"]), actor=city["zjw"], db_session=s,
                                   now=NOW, code="KB-SB-001")  # fmt: skip
        entry = service.publish_direct(_content(city["zjw"], change_note="导入"), actor=admin,
                                       db_session=s, now=NOW, code="KB-SB-001", demo=True)  # fmt: skip
        assert (entry.code, entry.status, entry.demo) == ("KB-SB-001", "published", True)
        (v1,) = service.versions(entry.id, db_session=s)
        assert (v1.state, v1.change_note) == ("published", "导入")
        revision = entry.revision
    with db.write() as s:
        same = service.publish_direct(_content(city["zjw"]), actor=admin, db_session=s, now=NOW,
                                      code="KB-SB-001", demo=True)  # fmt: skip
        assert same.revision == revision and len(service.versions(same.id, db_session=s)) == 1
        # A department's draft under way is overwritten by the import and published.
        service.save_draft(same.id, _content(city["zjw"], answer=ANSWER + "（草稿）"),
                           actor=city["zjw"], db_session=s, now=NOW)  # fmt: skip
        service.submit(same.id, actor=city["zjw"], db_session=s, now=NOW)
        changed = service.publish_direct(_content(city["zjw"], answer=ANSWER + "（导入）"),
                                         actor=admin, db_session=s, now=NOW, code="KB-SB-001")  # fmt: skip
        versions = service.versions(changed.id, db_session=s)
        assert [(v.number, v.state) for v in versions] == [(1, "superseded"), (2, "published")]
        assert versions[1].answer == ANSWER + "（导入）" and changed.pending_version_id is None


def test_list_entries_by_visibility_and_filters(db: Database, city: dict[str, Principal]) -> None:
    published = _published(db, city, valid_to=date(2026, 6, 20))
    with db.write() as s:
        draft = service.create_entry(_content(city["zjw"], title="公积金提取需要什么材料"),
                                     actor=city["zjw"], db_session=s, now=NOW).id  # fmt: skip
        other = service.create_entry(_content(city["jw"], title="小学入学报名时间"),
                                     actor=city["jw"], db_session=s, now=NOW).id  # fmt: skip

    def ids(who: str, **filters: object) -> list[int]:
        with db.read() as s:
            rows, total = service.list_entries(actor=city[who], db_session=s, today=TODAY,
                                               **filters)  # type: ignore[arg-type]  # fmt: skip
            assert total == len(rows)
            return sorted(e.id for e in rows)

    assert ids("agent") == [published]
    assert ids("zjw") == sorted([published, draft])
    assert ids("jw") == sorted([published, other])
    assert ids("supervisor") == sorted([published, draft, other])
    assert ids("supervisor", status="draft") == sorted([draft, other])
    assert ids("supervisor", q="公积金") == [draft]
    assert ids("supervisor", expiring_within_days=30) == [published]
    assert ids("supervisor", expiring_within_days=10) == []
    with db.read() as s:
        zjw_unit = city["zjw"].unit_id
        rows, total = service.list_entries(actor=city["supervisor"], db_session=s,
                                           owner_unit_id=zjw_unit, limit=1)  # fmt: skip
        assert total == 2 and len(rows) == 1


# ---- expiry and warnings ---------------------------------------------------------------------


def test_expiry_and_the_30_day_warning_at_pinned_dates(
    db: Database, city: dict[str, Principal]
) -> None:
    entry_id = _published(db, city, valid_to=date(2026, 7, 10))

    def warn(day: date) -> int:
        with db.write() as s:
            return service.warn_expiring(db_session=s, today=day)

    assert warn(date(2026, 6, 9)) == 0  # 31 days before its last day
    assert warn(date(2026, 6, 10)) == 1  # 30 days before
    assert warn(date(2026, 6, 10)) == 0  # once per valid_to
    assert warn(date(2026, 6, 20)) == 0
    with db.read() as s:
        entry = s.get(KnowledgeEntry, entry_id)
        assert entry is not None and entry.expiry_warned_for == date(2026, 7, 10)
    # The owner prolongs it: the new date warns again when its time comes.
    later = datetime(2026, 6, 20, 2, 0, tzinfo=UTC)
    with db.write() as s:
        service.save_draft(entry_id, _content(city["zjw"], valid_to=date(2026, 8, 31)),
                           actor=city["zjw"], db_session=s, now=later)  # fmt: skip
        service.submit(entry_id, actor=city["zjw"], db_session=s, now=later)
        service.publish(entry_id, actor=city["supervisor"], db_session=s, now=later)
    assert warn(date(2026, 7, 31)) == 0
    assert warn(date(2026, 8, 1)) == 1
    assert warn(date(2026, 8, 1)) == 0

    def expire(day: date) -> int:
        with db.write() as s:
            return service.expire_due(db_session=s, today=day)

    assert expire(date(2026, 8, 31)) == 0  # its last day still answers
    with db.read() as s:
        code = s.get(KnowledgeEntry, entry_id).code  # type: ignore[union-attr]
        assert resolve_entry(code, db_session=s, today=date(2026, 8, 31)) == (entry_id, 2)
    assert expire(date(2026, 9, 1)) == 1
    assert expire(date(2026, 9, 1)) == 0
    with db.read() as s:
        entry = s.get(KnowledgeEntry, entry_id)
        assert entry is not None and entry.status == "expired"
        assert service.answering_version(entry, db_session=s, today=date(2026, 9, 1)) is None
    assert code not in _codes(db, "社保卡丢了如何挂失和补办", today=date(2026, 9, 1))


def test_the_worker_step_expires_and_warns_in_city_days_and_repeats_nothing(
    db: Database, city: dict[str, Principal]
) -> None:
    ends = _published(db, city, valid_to=date(2026, 6, 30))
    soon = _published(db, city, title="社保卡密码忘了怎么办", valid_to=date(2026, 7, 31))
    # 2026-06-30 23:30 UTC is already 2026-07-01 in Beijing: the first entry's last day is over.
    now = datetime(2026, 6, 30, 16, 30, tzinfo=UTC)
    assert service.run_knowledge_jobs(db, now=now - timedelta(hours=1)) == 1  # 06-30: warn `ends`
    assert service.run_knowledge_jobs(db, now=now) == 2  # 07-01: expire `ends`, warn `soon`
    assert service.run_knowledge_jobs(db, now=now) == 0
    with db.read() as s:
        statuses = {
            e.id: (e.status, e.expiry_warned_for) for e in s.scalars(select(KnowledgeEntry))
        }
    assert statuses == {
        ends: ("expired", date(2026, 6, 30)),
        soon: ("published", date(2026, 7, 31)),
    }


# ---- uses and flags --------------------------------------------------------------------------


def _ticket(db: Database, city: dict[str, Principal]) -> int:
    with db.write() as s:
        ticket = create_ticket(TicketCreate(channel="phone", content="社保卡丢了怎么办"),
                               actor=city["agent"], db_session=s, now=NOW)  # fmt: skip
        return ticket.id


def test_record_use_counts_each_order_once_in_the_database(
    db: Database, city: dict[str, Principal]
) -> None:
    entry_id = _published(db, city)
    first, second = _ticket(db, city), _ticket(db, city)
    with db.write() as s:
        record_use(entry_id, 1, ticket_id=first, user_id=city["agent"].user_id, db_session=s,
                   now=NOW)  # fmt: skip
        record_use(entry_id, 1, ticket_id=first, user_id=city["agent"].user_id, db_session=s,
                   now=NOW)  # fmt: skip
    with db.write() as s:
        entry = s.get(KnowledgeEntry, entry_id)
        assert entry is not None and entry.use_count == 1
        # Another writer counted meanwhile: the increment happens in the row, not in Python.
        s.execute(update(KnowledgeEntry).where(KnowledgeEntry.id == entry_id).values(use_count=5))
        later = NOW + timedelta(hours=1)
        record_use(entry_id, 1, ticket_id=second, user_id=None, db_session=s, now=later)
        assert entry.use_count == 6 and entry.last_used_at == later
    with db.read() as s:
        uses = s.scalars(select(KnowledgeUse).order_by(KnowledgeUse.id)).all()
        assert [(u.ticket_id, u.version_number) for u in uses] == [(first, 1), (second, 1)]


def test_resolve_entry_refuses_what_does_not_answer_today(
    db: Database, city: dict[str, Principal]
) -> None:
    later = _published(db, city, valid_from=date(2026, 7, 1))
    with db.read() as s:
        for code in ("", "KB-NOPE", s.get(KnowledgeEntry, later).code):  # type: ignore[union-attr]
            with pytest.raises(Invalid) as caught:
                resolve_entry(code, db_session=s, today=TODAY)
            assert caught.value.field == "entry"
        code = s.get(KnowledgeEntry, later).code  # type: ignore[union-attr]
        assert resolve_entry(code, db_session=s, today=date(2026, 7, 1)) == (later, 1)


def test_a_flag_is_raised_once_and_resolved_by_the_owner(
    db: Database, city: dict[str, Principal]
) -> None:
    entry_id = _published(db, city)
    ticket_id = _ticket(db, city)

    def open_flags() -> int:
        with db.read() as s:
            return s.get(KnowledgeEntry, entry_id).open_flags  # type: ignore[union-attr]

    with db.write() as s:
        flag = service.raise_flag(entry_id, reason="outdated", note="补卡费用已取消",
                                  ticket_id=ticket_id, actor=city["agent"], db_session=s, now=NOW)  # fmt: skip
        again = service.raise_flag(entry_id, reason="outdated", note="再点一次",
                                   ticket_id=ticket_id, actor=city["agent"], db_session=s, now=NOW)  # fmt: skip
        assert again.id == flag.id and flag.version_number == 1
        other = service.raise_flag(entry_id, reason="unclear", note=None, ticket_id=None,
                                   actor=city["agent"], db_session=s, now=NOW)  # fmt: skip
        with pytest.raises(Invalid):
            service.raise_flag(entry_id, reason="boring", note=None, ticket_id=None,
                               actor=city["agent"], db_session=s, now=NOW)  # fmt: skip
        flag_id, other_id = flag.id, other.id
    assert open_flags() == 2
    with db.write() as s:
        with pytest.raises(Forbidden):  # another department
            service.resolve_flag(flag_id, status="fixed", note=None, actor=city["jw"],
                                 db_session=s, now=NOW)  # fmt: skip
        with pytest.raises(Invalid):
            service.resolve_flag(flag_id, status="open", note=None, actor=city["zjw"],
                                 db_session=s, now=NOW)  # fmt: skip
        done = service.resolve_flag(flag_id, status="fixed", note="已更新", actor=city["zjw"],
                                    db_session=s, now=NOW)  # fmt: skip
        assert (done.status, done.resolved_by_id) == ("fixed", city["zjw"].user_id)
    assert open_flags() == 1
    with db.write() as s:
        with pytest.raises(Conflict):
            service.resolve_flag(flag_id, status="dismissed", note=None, actor=city["zjw"],
                                 db_session=s, now=NOW)  # fmt: skip
        service.resolve_flag(other_id, status="dismissed", note="表述无误",
                             actor=city["supervisor"], db_session=s, now=NOW)  # fmt: skip
    assert open_flags() == 0
    with db.read() as s:
        mine, total = service.list_flags(actor=city["zjw"], db_session=s)
        assert total == 2 and {f.status for f in mine} == {"fixed", "dismissed"}
        assert service.list_flags(actor=city["jw"], db_session=s)[1] == 0
        assert service.list_flags(actor=city["agent"], db_session=s)[1] == 2  # raised them
        assert service.list_flags(actor=city["supervisor"], db_session=s, status="open")[1] == 0
        assert s.scalar(select(KnowledgeFlag.ticket_id).where(KnowledgeFlag.id == flag_id)) == (
            ticket_id
        )


def test_concurrent_answers_with_one_entry_lose_no_count(
    db: Database, city: dict[str, Principal]
) -> None:
    import threading

    entry_id = _published(db, city)
    tickets = [_ticket(db, city) for _ in range(6)]
    start = threading.Barrier(len(tickets))
    errors: list[BaseException] = []

    def answer(ticket_id: int) -> None:
        try:
            start.wait()
            with db.write() as s:
                s.get(KnowledgeEntry, entry_id)  # each holds the count it read
                record_use(entry_id, 1, ticket_id=ticket_id, user_id=None, db_session=s, now=NOW)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=answer, args=(t,)) for t in tickets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with db.read() as s:
        assert s.get(KnowledgeEntry, entry_id).use_count == len(tickets)  # type: ignore[union-attr]
