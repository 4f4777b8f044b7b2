"""The knowledge base as XLSX: export (console and CLI) in the import's own columns, a round trip
that changes nothing, an import with planted errors that reports exactly them and writes
nothing, new codes creating entries and known codes new versions (published directly by the
centre, change note 导入). Both databases, a fixed instant."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
import xlsxwriter
from conftest import principal
from fastapi.testclient import TestClient
from python_calamine import CalamineWorkbook
from sqlalchemy import func, select
from test_auth import Console, app_of
from typer.testing import CliRunner

from jiesu.db.engine import Database
from jiesu.knowledge import service, xlsx
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVersion
from jiesu.org.models import Unit

NOW = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)
HEADER = ["编码", "标题", "答复口径", "分类编码", "主管单位编码", "关键词", "常见问法", "生效日期",
          "失效日期", "政策依据", "链接", "版本", "状态", "使用次数"]  # fmt: skip
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


def _content(db: Database, **more: Any) -> service.EntryContent:
    base: dict[str, Any] = {
        "title": "社会保障卡丢失后如何挂失和补办", "answer": ANSWER, "category_code": "0101",
        "owner_unit_id": _unit(db, "S11"), "keywords": ["社保卡", "挂失"],
        "questions": ["社保卡丢了怎么办", "社保卡掉了去哪补"], "valid_from": date(2026, 1, 1),
        "valid_to": date(2027, 12, 31), "source": "《社会保障卡管理办法》（测试）",
        "link": "https://example.org/sbk", "change_note": "新建",
    }  # fmt: skip
    base.update(more)
    return service.EntryContent(**base)


def seed(db: Database) -> None:
    """Three published entries (one demo, one without dates or category) and one of them with
    a draft in progress; a draft-only entry of S11."""
    admin = principal(db, "admin1")
    with db.write() as s:
        service.publish_direct(_content(db), actor=admin, db_session=s, now=NOW, code="KB-T-001")
        service.publish_direct(
            _content(db, title="供暖期室温不达标怎么办", category_code=None, valid_from=None,
                     valid_to=None, link=None, source=None, keywords=[], questions=["暖气不热"],
                     owner_unit_id=_unit(db, "C-RL")),
            actor=admin, db_session=s, now=NOW, code="KB-T-002", demo=True,
        )  # fmt: skip
        service.publish_direct(_content(db, title="居住证如何办理签注"), actor=admin, db_session=s,
                               now=NOW, code="KB-T-003")  # fmt: skip
        e3 = service.get_entry("KB-T-003", actor=admin, db_session=s)
        service.save_draft(e3.id, _content(db, title="居住证签注（修改中）"),
                           actor=principal(db, "s11.handler"), db_session=s, now=NOW)  # fmt: skip
        service.create_entry(_content(db, title="东一街道的内部草稿"),
                             actor=principal(db, "s11.handler"), db_session=s, now=NOW,
                             code="KB-T-004")  # fmt: skip


def fingerprint(db: Database) -> dict[str, Any]:
    with db.read() as s:
        return {
            "entries": sorted(s.execute(select(KnowledgeEntry.code, KnowledgeEntry.status,
                                               KnowledgeEntry.revision, KnowledgeEntry.title))
                              .all()),
            "versions": sorted(s.execute(select(KnowledgeVersion.entry_id, KnowledgeVersion.number,
                                                KnowledgeVersion.state, KnowledgeVersion.title))
                               .all()),
        }  # fmt: skip


def rows_of(data: bytes) -> list[list[Any]]:
    return list(CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0).to_python())


def book(rows: Sequence[Sequence[Any]], header: Sequence[str] = HEADER) -> bytes:
    buffer = io.BytesIO()
    wb = xlsxwriter.Workbook(buffer, {"in_memory": True})
    ws = wb.add_worksheet()
    ws.write_row(0, 0, list(header))
    for i, row in enumerate(rows, start=1):
        for j, value in enumerate(row):
            if isinstance(value, date):
                ws.write_datetime(i, j, datetime.combine(value, datetime.min.time()),
                                  wb.add_format({"num_format": "yyyy-mm-dd"}))  # fmt: skip
            elif value is not None:
                ws.write(i, j, value)
    wb.close()
    return buffer.getvalue()


def test_the_export_has_the_columns_and_what_the_reader_may_see(
    client: TestClient, db: Database, clock: None
) -> None:
    seed(db)
    admin = Console(app_of(client), "admin1").get("/console/knowledge/export.xlsx")
    assert admin.status_code == 200
    assert admin.headers["content-type"].startswith("application/vnd.openxmlformats")
    rows = rows_of(admin.content)
    assert [str(h) for h in rows[0]] == HEADER
    by_code = {r[0]: r for r in rows[1:]}
    assert set(by_code) == {"KB-T-001", "KB-T-002", "KB-T-003", "KB-T-004"}
    first = by_code["KB-T-001"]
    assert first[1:7] == ["社会保障卡丢失后如何挂失和补办", ANSWER, "0101", "S11", "社保卡、挂失",
                          "社保卡丢了怎么办\n社保卡掉了去哪补"]  # fmt: skip
    assert str(first[7])[:10] == "2026-01-01" and str(first[8])[:10] == "2027-12-31"
    assert first[12] == "已发布" and first[11] == 1
    assert by_code["KB-T-003"][1] == "居住证如何办理签注"  # the answering version, not the draft
    assert by_code["KB-T-004"][12] == "草稿"
    agent = rows_of(Console(app_of(client), "agent1").get("/console/knowledge/export.xlsx").content)
    assert {r[0] for r in agent[1:]} == {"KB-T-001", "KB-T-002", "KB-T-003"}
    demo = Console(app_of(client), "agent1").get("/console/knowledge/export.xlsx?demo=1")
    assert [r[0] for r in rows_of(demo.content)[1:]] == ["KB-T-002"]


def test_a_round_trip_changes_nothing(client: TestClient, db: Database, clock: None) -> None:
    seed(db)
    browser = Console(app_of(client), "admin1")
    data = browser.get("/console/knowledge/export.xlsx").content
    before = fingerprint(db)
    with db.read() as s:
        report = xlsx.check(data, actor=principal(db, "admin1"), db_session=s)
    assert report.errors == [] and report.rows == 4 and report.unchanged == 4
    assert report.valid == []
    r = browser.http.post("/console/knowledge/import", data={"csrf_token": browser.csrf},
                          files={"file": ("knowledge.xlsx", data)})  # fmt: skip
    assert r.status_code == 200, r.text[:500]
    digest = re.search(r'name="digest" value="([0-9a-f]{64})"', r.text)
    assert digest and "未变 4 条" in r.text
    done = browser.post("/console/knowledge/import/commit", {"digest": digest.group(1)})
    assert done.status_code == 200 and "新建 0 条，更新 0 条，未变 4 条" in done.text
    assert fingerprint(db) == before


def test_planted_errors_are_reported_exactly_and_nothing_is_written(
    client: TestClient, db: Database, clock: None
) -> None:
    seed(db)
    good = ["KB-N-001", "新生儿医保参保怎么办理", ANSWER, "0101", "S11", "新生儿、医保", "孩子刚出生怎么上医保",
            date(2026, 1, 1), date(2027, 1, 1), "《办法》", "https://example.org/a", 1, "草稿", 0]  # fmt: skip
    rows = [
        good,
        ["KB-N-002", "短", ANSWER, "", "S11"],  # row 3: title too short
        ["KB-N-003", "一个未知单位的条目", ANSWER, "", "NOPE"],  # row 4: unknown owner
        ["KB-N-004", "一个未知分类的条目", ANSWER, "9999", "S11"],  # row 5: unknown category
        ["KB-N-005", "日期写错了的条目", ANSWER, "", "S11", "", "", "明年一月"],  # row 6
        [
            "KB-N-006",
            "失效早于生效的条目",
            ANSWER,
            "",
            "S11",
            "",
            "",
            date(2026, 5, 1),
            date(2026, 4, 1),
        ],  # row 7
        ["KB-N-001", "编码重复了的条目啊", ANSWER, "", "S11"],  # row 8: duplicate code
        ["KB-N-008", "链接不对的条目啊", ANSWER, "", "S11", "", "", None, None, "", "ftp://x"],
        ["KB-N-009", "答复太短的条目", "太短", "", "S11"],  # row 10
        [None] * 5,  # an empty row is skipped
        ["坏 编码", "编码有空格的条目", ANSWER, "", "S11"],  # row 12
    ]
    data = book(rows)
    before = fingerprint(db)
    with db.read() as s:
        report = xlsx.check(data, actor=principal(db, "admin1"), db_session=s)
    assert report.errors == [
        (3, "标题", "标题须为 4 至 200 个字"),
        (4, "主管单位编码", "未知的单位编码「NOPE」"),
        (5, "分类编码", "未知的分类编码「9999」"),
        (6, "生效日期", "日期无法识别「明年一月」，请写作 2026-01-31"),
        (7, "失效日期", "失效日期早于生效日期"),
        (8, "编码", "编码与第 2 行重复"),
        (9, "链接", "链接须以 http:// 或 https:// 开头，最多 500 个字符"),
        (10, "答复口径", "答复口径须为 20 至 5000 个字"),
        (12, "编码", "编码只能由字母、数字、- 和 _ 组成，最多 32 个字符"),
    ]
    assert report.rows == 10 and [r.code for r in report.valid] == ["KB-N-001"]
    browser = Console(app_of(client), "admin1")
    r = browser.http.post("/console/knowledge/import", data={"csrf_token": browser.csrf},
                          files={"file": ("bad.xlsx", data)})  # fmt: skip
    assert r.status_code == 422 and "未写入任何数据" in r.text and 'name="digest"' not in r.text
    assert "未知的单位编码「NOPE」" in r.text
    with db.write() as s:  # commit refuses while any row is wrong
        report = xlsx.check(data, actor=principal(db, "admin1"), db_session=s)
        xlsx.commit(report, actor=principal(db, "admin1"), db_session=s, now=NOW)
        assert not report.committed
    assert fingerprint(db) == before
    missing = book([["标题", ANSWER]], header=["标题", "答复口径"])
    with db.read() as s:
        report = xlsx.check(missing, actor=principal(db, "admin1"), db_session=s)
    assert report.errors == [(1, "主管单位编码", "缺少列「主管单位编码」")]
    with db.read() as s:
        report = xlsx.check(b"not a workbook", actor=principal(db, "admin1"), db_session=s)
    assert report.errors == [(1, "文件", "不是有效的 Excel（.xlsx）文件")]


def test_new_codes_create_entries_and_known_codes_new_published_versions(
    client: TestClient, db: Database, clock: None
) -> None:
    seed(db)
    english = ["code", "title", "answer", "category", "owner", "keywords", "questions",
               "valid_from", "valid_to", "source", "link"]  # fmt: skip
    changed = ANSWER + "补办一般在十个工作日内完成。"
    data = book([
        ["KB-T-001", "社会保障卡丢失后如何挂失和补办", changed, "0101", "S11", "社保卡，挂失；补卡",
         "社保卡丢了怎么办\n社保卡掉了去哪补", "2026/1/1", "2027年12月31日",
         "《社会保障卡管理办法》（测试）", "https://example.org/sbk"],
        ["", "新建一条没有编码的条目", ANSWER, "", "C-RL", "", "", 46023, "", "", ""],
    ], header=english)  # fmt: skip
    with db.read() as s:
        report = xlsx.check(data, actor=principal(db, "admin1"), db_session=s)
    assert report.errors == [] and report.new == 1 and report.changed == 1
    browser = Console(app_of(client), "admin1")
    r = browser.http.post("/console/knowledge/import", data={"csrf_token": browser.csrf},
                          files={"file": ("new.xlsx", data)})  # fmt: skip
    digest = re.search(r'name="digest" value="([0-9a-f]{64})"', r.text)
    assert digest, r.text[:800]
    done = browser.post("/console/knowledge/import/commit", {"digest": digest.group(1)})
    assert done.status_code == 200 and "新建 1 条，更新 1 条" in done.text
    with db.read() as s:
        entry = s.scalar(select(KnowledgeEntry).where(KnowledgeEntry.code == "KB-T-001"))
        assert entry is not None and entry.status == "published"
        v = s.get(KnowledgeVersion, entry.published_version_id)
        assert v is not None and v.number == 2 and v.answer == changed
        assert v.change_note == "导入" and v.keywords == ["社保卡", "挂失", "补卡"]
        assert v.valid_to == date(2027, 12, 31)
        new = s.scalar(
            select(KnowledgeEntry).where(KnowledgeEntry.title == "新建一条没有编码的条目")
        )
        assert new is not None and new.status == "published" and new.valid_from == date(2026, 1, 1)
    # the same file again: nothing more
    again = fingerprint(db)
    with db.read() as s:
        report = xlsx.check(data, actor=principal(db, "admin1"), db_session=s)
    assert report.unchanged == 1 and report.new == 1  # a row without a code is always new
    assert again == fingerprint(db)


def test_the_cli_exports_and_imports_with_the_named_users_rights(
    db: Database, clock: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jiesu.cli import app as cli
    from jiesu.settings import get_settings

    seed(db)
    monkeypatch.setenv("JIESU_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        out = tmp_path / "知识库.xlsx"
        result = CliRunner().invoke(cli, ["knowledge", "export", str(out), "--as", "agent1"])
        assert result.exit_code == 0, result.output
        assert {r[0] for r in rows_of(out.read_bytes())[1:]} == {"KB-T-001", "KB-T-002",
                                                                 "KB-T-003"}  # fmt: skip
        everything = tmp_path / "全部.xlsx"
        result = CliRunner().invoke(cli, ["knowledge", "export", str(everything)])
        assert result.exit_code == 0, result.output
        assert len(rows_of(everything.read_bytes())) == 1 + 4  # drafts too
        before = fingerprint(db)
        checked = CliRunner().invoke(cli, ["knowledge", "import", str(out), "--as", "admin1"])
        assert checked.exit_code == 0, checked.output
        assert "未变 3" in checked.output and "仅校验" in checked.output
        refused = CliRunner().invoke(cli, ["knowledge", "import", str(out), "--commit",
                                           "--as", "s11.handler"])  # fmt: skip
        assert refused.exit_code == 2
        bad = tmp_path / "bad.xlsx"
        bad.write_bytes(book([["KB-X-1", "短", ANSWER, "", "S11"], ["KB-X-2", "一条好的新条目", ANSWER,
                                                                   "", "S11"]]))  # fmt: skip
        failed = CliRunner().invoke(cli, ["knowledge", "import", str(bad), "--commit",
                                          "--as", "admin1"])  # fmt: skip
        assert failed.exit_code == 1 and "第 2 行  标题" in failed.output
        assert "未写入任何数据" in failed.output
        assert fingerprint(db) == before
        good = tmp_path / "good.xlsx"
        good.write_bytes(book([["KB-X-2", "一条好的新条目", ANSWER, "", "S11"]]))
        wrote = CliRunner().invoke(cli, ["knowledge", "import", str(good), "--commit",
                                         "--as", "admin1"])  # fmt: skip
        assert wrote.exit_code == 0 and "已写入：新建 1" in wrote.output, wrote.output
        with db.read() as s:
            assert s.scalar(select(func.count()).select_from(KnowledgeEntry)
                            .where(KnowledgeEntry.code == "KB-X-2")) == 1  # fmt: skip
    finally:
        get_settings.cache_clear()
