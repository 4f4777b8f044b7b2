"""The export writers without a database or a web server: CSV chunks, the XLSX file, the file's
streaming and the download's name."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import unquote

import openpyxl
import pytest

from jiesu.exports import writers
from jiesu.exports.views import content_disposition
from jiesu.exports.writers import Column, csv_chunks, file_chunks, xlsx_file

COLUMNS = [Column("工单编号", 16), Column("受理时间", 17), Column("标题", 30), "是否加急", "分数"]
WHEN = datetime(2026, 12, 5, 16, 30, tzinfo=UTC)  # 2026-12-06 00:30 in Beijing


def test_csv_has_a_bom_chinese_headers_and_values_for_people() -> None:
    rows = [["2026120600001", WHEN, "=HYPERLINK(\"x\")", True, 95.5],
            ["2026120600002", None, "-1 楼漏水", False, 3.0]]  # fmt: skip
    data = b"".join(csv_chunks(COLUMNS, rows))
    assert data.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert table == [
        ["工单编号", "受理时间", "标题", "是否加急", "分数"],
        ["2026120600001", "2026-12-06 00:30", '\'=HYPERLINK("x")', "是", "95.5"],
        ["2026120600002", "", "'-1 楼漏水", "否", "3"],
    ]


def test_csv_comes_in_chunks_as_the_rows_arrive() -> None:
    pulled = 0

    def rows():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for i in range(20_000):
            pulled += 1
            yield [f"{i:013d}", WHEN, "路灯不亮" * 5, False, i]

    chunks = csv_chunks(COLUMNS, rows())
    first = next(chunks)
    assert pulled < 20_000  # the first chunk is sent before the last row is read
    assert writers.CHUNK_BYTES <= len(first.decode()) < writers.CHUNK_BYTES + 1_000  # characters
    rest = list(chunks)
    assert len(rest) > 5
    table = list(csv.reader(io.StringIO(b"".join([first, *rest]).decode("utf-8-sig"))))
    assert len(table) == 20_001 and table[-1][0] == f"{19_999:013d}"


def test_xlsx_freezes_the_header_sets_widths_and_keeps_text_as_text(tmp_path: Path) -> None:
    rows = [["2026120600001", WHEN, "=SUM(A1:A2)", True, 95.5],
            ["2026120600002", date(2026, 12, 1), "长" * 40_000, None, 7]]  # fmt: skip
    path = xlsx_file(COLUMNS, rows, sheet="工单", directory=tmp_path)
    book = openpyxl.load_workbook(path)
    ws = book["工单"]
    assert ws.freeze_panes == "A2"
    assert ws.column_dimensions["C"].width == pytest.approx(30, abs=1)
    assert [c.value for c in ws[1]] == ["工单编号", "受理时间", "标题", "是否加急", "分数"]
    assert ws["B2"].value == datetime(2026, 12, 6, 0, 30)  # city time, as Excel shows it
    assert ws["C2"].value == "=SUM(A1:A2)" and ws["C2"].data_type == "s"  # never a formula
    assert ws["D2"].value == "是" and ws["E2"].value == 95.5
    assert ws["B3"].value == datetime(2026, 12, 1) and ws["D3"].value is None
    assert len(ws["C3"].value) == writers.XLSX_MAX_TEXT  # Excel's limit for one cell
    path.unlink()
    assert list(tmp_path.iterdir()) == []  # xlsxwriter's own temporary files are gone too


def test_xlsx_goes_on_in_a_second_sheet_past_excels_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writers, "XLSX_MAX_ROWS", 4)  # the header and three rows a sheet
    path = xlsx_file(["编号"], ([str(i)] for i in range(7)), sheet="工单", directory=tmp_path)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["工单", "工单（2）", "工单（3）"]
    values = [[c.value for c in row] for ws in book.worksheets for row in ws.iter_rows()]
    assert values == [["编号"], ["0"], ["1"], ["2"], ["编号"], ["3"], ["4"], ["5"],
                      ["编号"], ["6"]]  # fmt: skip


def test_a_failed_xlsx_leaves_no_file(tmp_path: Path) -> None:
    def rows():  # type: ignore[no-untyped-def]
        yield ["1"]
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        xlsx_file(["编号"], rows(), sheet="工单", directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_streamed_and_gone_even_if_never_read(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    path.write_bytes(b"a" * 200_000)
    chunks = file_chunks(path, chunk=65_536)
    assert not path.exists()  # removed at once: an abandoned download leaves nothing
    assert [len(c) for c in chunks] == [65_536, 65_536, 65_536, 3_392]
    other = tmp_path / "y.xlsx"
    other.write_bytes(b"b")
    file_chunks(other)  # never iterated
    assert not other.exists()


def test_the_download_keeps_its_chinese_name() -> None:
    header = content_disposition("派单审核_待派单_20261206.xlsx")
    assert header.startswith('attachment; filename="export_20261206.xlsx"; ')
    encoded = header.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == "派单审核_待派单_20261206.xlsx"
    assert all(ord(ch) < 128 for ch in header)  # a header is ASCII
    assert 'filename="export.csv"' in content_disposition("工单.csv")
