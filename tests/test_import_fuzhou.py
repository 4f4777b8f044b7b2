"""Acceptance (issue 15, import): the Fuzhou river requests (../shared/data/fuzhou12345,
1,203 rows) imported with docs/examples/import/fuzhou_river_requests.yaml into a city with
Fuzhou's districts (tests/packs/fuzhou), on SQLite and PostgreSQL.

Every row maps (type, channel, district, date, reply, re-dispatch count checked against the
file); a second run changes nothing; a copy with planted errors gets a row-precise report and
writes nothing; a changed row updates its order; the assessment reads the imported months."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import TESTS, shared_data
from sqlalchemy import func, select
from typer.testing import CliRunner

from jiesu.assessment import service as assessment
from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.imports import service
from jiesu.imports.mapping import load_mapping
from jiesu.imports.models import ImportedOrder
from jiesu.org.models import Unit
from jiesu.settings import get_settings
from jiesu.tickets.lifecycle import BY_NAME
from jiesu.tickets.models import Event, Ticket

FUZHOU_PACK = TESTS / "packs" / "fuzhou"
MAPPING = TESTS.parent / "docs" / "examples" / "import" / "fuzhou_river_requests.yaml"
TZ = ZoneInfo("Asia/Shanghai")
TYPES = {"咨询": "consult", "求助": "help", "投诉": "complain", "举报": "report", "建议": "suggest"}
CHANNELS = {"网站": "web", "电话": "phone", "微信": "wechat", "e福州app": "app", "12345app": "app",
            "短信": "sms", "邮件": "email", "qq": "web", "微博": "web"}  # fmt: skip


@pytest.fixture
def fuzhou(empty_db: Database) -> Iterator[Database]:
    with empty_db.write() as s:
        load_pack(read_pack(FUZHOU_PACK), db_session=s)
    yield empty_db


def run(db: Database, path: Path, *, commit: bool = True) -> service.Report:
    mapping = load_mapping(MAPPING)
    with db.read() as s:
        report = service.check(path, mapping, db_session=s)
    if commit and not report.errors:
        with db.write() as s:
            service.commit(report, mapping, db_session=s)
    return report


def counts(db: Database) -> tuple[int, int, int, int]:
    with db.read() as s:
        return (
            s.scalar(select(func.count()).select_from(Ticket)) or 0,
            s.scalar(select(func.count()).select_from(Event)) or 0,
            s.scalar(select(func.max(Ticket.version))) or 0,
            s.scalar(select(func.count()).select_from(ImportedOrder)) or 0,
        )


def check_lifecycle(events: list[Event]) -> None:
    state = None
    for e in events:
        assert e.state_before == state, (e.ticket_id, e.action)
        if e.action != "receive":
            action = BY_NAME[e.action]
            assert e.state_before in action.states, (e.ticket_id, e.action, e.state_before)
            if action.next == "=":
                assert e.state_after == e.state_before
            elif isinstance(action.next, str):
                assert e.state_after == action.next
        state = e.state_after


def test_fuzhou_rivers_import_maps_every_row_and_a_second_run_changes_nothing(
    fuzhou: Database,
) -> None:
    path = shared_data("fuzhou12345", "river_requests.csv")
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1203
    report = run(fuzhou, path)
    assert (report.rows, len(report.valid), report.errors) == (1203, 1203, [])
    assert (report.created, report.updated, report.unchanged) == (1203, 0, 0)
    with fuzhou.read() as s:
        districts = dict(s.execute(select(Unit.id, Unit.name).where(Unit.kind == "district")).all())
        ext = dict(s.execute(select(ImportedOrder.ticket_id, ImportedOrder.external_id)).all())
        tickets = {t.id: t for t in s.scalars(select(Ticket).order_by(Ticket.id))}
        events: dict[int, list[Event]] = {}
        for e in s.scalars(select(Event).order_by(Event.ticket_id, Event.seq)):
            events.setdefault(e.ticket_id, []).append(e)
    assert len(tickets) == 1203 and len(set(ext.values())) == 1203
    # the rows were written in file order: the n-th ticket is the n-th row
    for row, ticket in zip(rows, tickets.values(), strict=True):
        timeline = events[ticket.id]
        assert ticket.request_type == TYPES[row["request_type"]]
        assert ticket.channel == CHANNELS[row["channel"].strip()]
        assert districts[ticket.district_id] == row["district"]
        assert ticket.created_at.astimezone(TZ).date() == date.fromisoformat(row["date"])
        assert ticket.title == row["title"] and ticket.content == row["content"]
        assert ticket.address == row["district"] + row["river"]
        reply = [e for e in timeline if e.action == "reply"][-1]
        assert reply.data["content"] == row["reply"]
        redispatches = int(row["redispatch_count"])
        assert sum(e.action == "reopen" for e in timeline) == redispatches
        assert ticket.round == redispatches + 1
        assert ticket.status == "closed" and ticket.number.startswith(row["date"].replace("-", ""))
        check_lifecycle(timeline)
    before = counts(fuzhou)
    again = run(fuzhou, path)
    assert (again.created, again.updated, again.unchanged, again.warnings) == (0, 0, 1203, [])
    assert counts(fuzhou) == before


def test_the_assessment_reads_the_imported_months_as_the_rebuild_would(
    fuzhou: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "PARALLEL_FROM", 500)  # the facts in worker processes too
    path = shared_data("fuzhou12345", "river_requests.csv")
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    run(fuzhou, path)
    month = Counter(r["date"][:7] for r in rows).most_common(1)[0][0]
    start = date.fromisoformat(month + "-01")
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1).replace(day=1)
    end = date.fromordinal(end.toordinal() - 1)
    with fuzhou.read() as s:
        totals = assessment.unit_totals(start, end, db_session=s)
        kept = assessment.snapshot(db_session=s)
    # the 三率 table of the busiest imported month has its orders
    led = sum(t.get("led", 0) for t in totals.values())
    received = sum(t.get("received", 0) for t in totals.values())
    assert received == sum(r["date"].startswith(month) for r in rows) > 0
    assert led >= received  # every order led by a unit (escalated rounds count once more)
    assert sum(t.get("responded", 0) for t in totals.values()) > 0
    # what the import added is exactly what a rebuild from the events gives
    with fuzhou.write() as s:
        assessment.rebuild(db_session=s)
    with fuzhou.read() as s:
        assert assessment.snapshot(db_session=s) == kept


def plant(source: Path, target: Path) -> dict[int, str]:
    """A copy of the file with errors planted in known rows; their line → the column."""
    with source.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    planted = {5: ("date", "2019-02-30"), 40: ("district", "火星区"),
               300: ("request_type", "吐槽"), 777: ("content", ""),
               1000: ("redispatch_count", "两次"), 1202: ("channel", "飞鸽传书")}  # fmt: skip
    for index, (column, value) in planted.items():
        rows[index][column] = value
    with target.open("w", encoding="gb18030", newline="") as fh:  # and in GB18030
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    # a spreadsheet's line: the header is line 1, so row index i is line i + 2
    return {index + 2: column for index, (column, _) in planted.items()}


def test_a_file_with_planted_errors_gets_a_row_precise_report_and_writes_nothing(
    fuzhou: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "rivers_bad.csv"
    expected = plant(shared_data("fuzhou12345", "river_requests.csv"), bad)
    report = run(fuzhou, bad, commit=False)
    assert {(line, column) for line, column, _ in report.errors} == set(expected.items())
    assert report.rows == 1203 and len(report.valid) == 1203 - len(expected)
    # the command: prints the report, writes its CSV, exits 1 and writes nothing
    monkeypatch.setenv("JIESU_DATABASE_URL", fuzhou.url)
    get_settings.cache_clear()
    from jiesu.cli import app

    try:
        result = CliRunner().invoke(
            app, ["import", str(bad), "--mapping", str(MAPPING), "--commit", "--quiet"]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    for line, column in expected.items():
        assert f"第 {line} 行  {column}：" in result.output
    assert "未写入任何数据" in result.output
    assert counts(fuzhou) == (0, 0, 0, 0)
    with (tmp_path / "rivers_bad.csv.report.csv").open(encoding="utf-8-sig") as fh:
        listed = list(csv.reader(fh))[1:]
    assert {(int(r[0]), r[1]) for r in listed} == set(expected.items())
    # --skip-errors: the good rows are written, the bad ones listed
    monkeypatch.setenv("JIESU_DATABASE_URL", fuzhou.url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["import", str(bad), "--mapping", str(MAPPING),
                                          "--commit", "--skip-errors", "--quiet"])  # fmt: skip
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "新建 1197" in result.output
    assert counts(fuzhou)[0::3] == (1203 - len(expected), 1203 - len(expected))


def test_a_changed_row_updates_its_order_and_a_changed_timeline_is_reported(
    fuzhou: Database, tmp_path: Path
) -> None:
    source = shared_data("fuzhou12345", "river_requests.csv")
    small = tmp_path / "rivers.csv"
    with source.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:30]

    def write(rows: list[dict[str, str]]) -> None:
        with small.open("w", encoding="utf-8-sig", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    write(rows)
    assert run(fuzhou, small).created == 30
    tickets, events, _, orders = counts(fuzhou)
    rows[3] = rows[3] | {"reply": "更正后的答复内容"}  # the timeline: reported, not rewritten
    rows[4] = rows[4] | {"reply": rows[4]["reply"]}
    rows[7] = rows[7] | {"channel": "电话" if rows[7]["channel"] != "电话" else "网站"}
    write(rows)
    report = run(fuzhou, small)
    assert (report.created, report.updated, report.unchanged) == (0, 2, 28)
    assert [w[0] for w in report.warnings] == [5]  # row index 3 is line 5
    with fuzhou.read() as s:
        eighth = s.scalars(select(Ticket).order_by(Ticket.id).offset(7).limit(1)).one()
        last = s.scalars(select(Event).where(Event.ticket_id == eighth.id)
                         .order_by(Event.seq.desc()).limit(1)).one()  # fmt: skip
        assert eighth.channel == CHANNELS[rows[7]["channel"]]
        assert last.action == "import_update" and last.data["changed"] == ["channel"]
        assert last.state_before == last.state_after == "closed"
        kept = assessment.snapshot(db_session=s)
    assert counts(fuzhou)[0::3] == (tickets, orders)
    assert counts(fuzhou)[1] == events + 1
    with fuzhou.write() as s:  # the intake counts moved with the channel
        assessment.rebuild(db_session=s)
    with fuzhou.read() as s:
        assert assessment.snapshot(db_session=s) == kept
    # and the same file once more changes nothing
    assert run(fuzhou, small).unchanged == 30


def test_an_xlsx_file_reads_like_the_csv(fuzhou: Database, tmp_path: Path) -> None:
    import xlsxwriter

    source = shared_data("fuzhou12345", "river_requests.csv")
    with source.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[:21]
    path = tmp_path / "rivers.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("工单")
    date_format = book.add_format({"num_format": "yyyy-mm-dd"})
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if r and rows[0][c] == "date":  # a real date cell
                sheet.write_datetime(r, c, datetime.fromisoformat(value), date_format)
            elif r and rows[0][c] == "redispatch_count":
                sheet.write_number(r, c, int(value))
            else:
                sheet.write_string(r, c, value)
    book.close()
    report = run(fuzhou, path)
    assert (report.rows, report.errors, report.created) == (20, [], 20)
    with fuzhou.read() as s:
        created = list(s.scalars(select(Ticket.created_at).order_by(Ticket.id)))
    assert [c.astimezone(TZ).date().isoformat() for c in created] == [r[6] for r in rows[1:]]
    assert all(c.tzinfo is UTC or c.utcoffset() == UTC.utcoffset(None) for c in created)
    # the CSV of the same rows is the same rows: nothing new
    small = tmp_path / "rivers.csv"
    shutil.copyfile(source, small)
    with small.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    assert run(fuzhou, small).unchanged == 20


OLD_SYSTEM = """\
source: old-system
fields:
  external_id: 编号
  number: 工单号
  title: 标题
  content: 内容
  created_at: 受理时间
  district: 区县
  street: 街道
  requester_phone: 电话
  status:
    column: 状态
    map: {已办结: closed, 直接答复: answered, 转警: transferred, 办理中: accepted}
  transfer_to: {column: 转至, default: "110"}
  replied_at: 答复时间
  reply: 答复
  satisfaction: {column: 满意度, map: {满意: satisfied, 不满意: dissatisfied}}
"""
OLD_ROWS = [
    ["编号", "工单号", "标题", "内容", "受理时间", "区县", "街道", "电话", "状态", "转至",
     "答复时间", "答复", "满意度"],
    ["A-1", "2019080500001", "噪声扰民", "夜间施工噪声", "2019年8月5日 21时30分", "仓山",
     "上渡街道", "13800000000", "已办结", "", "2019/8/7 10:00", "已责令停工。", "满意"],
    ["A-2", "", "咨询公积金", "公积金提取", "20190806", "鼓楼区", "", "", "直接答复", "", "",
     "按政策口径答复", ""],
    ["A-3", "", "路口起火", "有烟", "43683.5", "晋安区", "", "", "转警", "119", "", "", ""],
    ["A-4", "", "河道垃圾", "漂浮物", "2019-08-06 08:00", "晋安区", "茶园街道", "", "办理中",
     "", "", "", ""],
]  # fmt: skip


def test_an_old_system_export_with_ids_numbers_and_statuses(
    fuzhou: Database, tmp_path: Path
) -> None:
    mapping = tmp_path / "old.yaml"
    mapping.write_text(OLD_SYSTEM, encoding="utf-8")
    path = tmp_path / "old.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(OLD_ROWS)
    spec = load_mapping(mapping)
    with fuzhou.read() as s:
        report = service.check(path, spec, db_session=s)
    assert report.errors == []
    with fuzhou.write() as s:
        service.commit(report, spec, db_session=s)
    assert report.created == 4
    with fuzhou.read() as s:
        orders = dict(s.execute(select(ImportedOrder.external_id, ImportedOrder.ticket_id)).all())
        tickets = {ext: s.get(Ticket, tid) for ext, tid in orders.items()}
        actions = {
            ext: [e.action for e in s.scalars(
                select(Event).where(Event.ticket_id == t.id).order_by(Event.seq))]
            for ext, t in tickets.items() if t is not None
        }  # fmt: skip
        street = s.scalar(select(Unit.id).where(Unit.name == "上渡街道"))
    one, two, three, four = (tickets[k] for k in ("A-1", "A-2", "A-3", "A-4"))
    assert one is not None and two is not None and three is not None and four is not None
    assert one.number == "2019080500001" and one.street_id == street
    assert one.created_at == datetime(2019, 8, 5, 21, 30, tzinfo=TZ).astimezone(UTC)
    assert one.satisfaction == "satisfied" and one.solved is True and one.status == "closed"
    assert two.number == "2019080600001"  # the day's counter: the next free number
    assert actions["A-2"] == ["receive", "answer", "close"]
    assert three.created_at == datetime(2019, 8, 6, 12, tzinfo=TZ).astimezone(UTC)  # serial
    assert actions["A-3"] == ["receive", "transfer", "close"]
    assert actions["A-4"] == ["receive", "dispatch", "accept", "contact"]
    assert four.status == "accepted" and four.closed_at is None
    for ext in ("A-1", "A-4"):
        with fuzhou.read() as s:
            check_lifecycle(list(s.scalars(
                select(Event).where(Event.ticket_id == tickets[ext].id).order_by(Event.seq))))  # type: ignore[union-attr]  # fmt: skip
    # another source may not take a number that is already an order's
    with fuzhou.read() as s:
        other = service.check(path, spec, db_session=s, source="another")
    assert [(line, column) for line, column, _ in other.errors] == [(2, "工单号")]
    # the same source again: nothing new
    with fuzhou.read() as s:
        again = service.check(path, spec, db_session=s)
    with fuzhou.write() as s:
        service.commit(again, spec, db_session=s)
    assert (again.created, again.unchanged) == (0, 4)
