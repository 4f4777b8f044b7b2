"""The file formats of an export: CSV streamed in chunks and XLSX written in constant memory.

Pure: no database and no web import. A list arrives as its columns (Chinese titles) and an
iterator of rows (sequences of plain values); nothing here holds more than one chunk of rows.

- CSV: UTF-8 with a byte-order mark (Excel then reads Chinese right), one header row, values as
  people read them: datetimes in city time (`2026-12-06 14:05`), yes/no as 是/否. A text that a
  spreadsheet would run as a formula (=, +, -, @ first) is written with a leading apostrophe.
- XLSX: xlsxwriter in `constant_memory` mode (each row goes to a temporary file as it is
  written), the header row frozen, column widths set; datetimes as real Excel datetimes in city
  time. Past the sheet's 1,048,576 rows the list continues on a second sheet.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import xlsxwriter

from jiesu.settings import city_tz

CHUNK_BYTES = 64 * 1024  # a CSV chunk is sent once it holds this many characters
XLSX_MAX_ROWS = 1_048_576  # Excel's rows per sheet, the header included
XLSX_MAX_TEXT = 32_767  # Excel's characters per cell
DATETIME_TEXT = "%Y-%m-%d %H:%M"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    """One column of an export: its Chinese title and its width in the XLSX (characters)."""

    title: str
    width: int = 12


def _column(c: Column | str) -> Column:
    return c if isinstance(c, Column) else Column(c, max(8, 2 * len(c) + 2))


def _local(t: datetime) -> datetime:
    return t.astimezone(city_tz()) if t.tzinfo else t


def text(value: Any) -> str:
    """A value as a person reads it in a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, datetime):
        return _local(value).strftime(DATETIME_TEXT)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value == value else ""
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_START) else value
    return str(value)


def csv_chunks(columns: Sequence[Column | str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """The list as CSV bytes, in chunks of about `CHUNK_BYTES` characters (64–192 KB of UTF-8;
    the first carries the BOM)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow([_column(c).title for c in columns])
    for row in rows:
        writer.writerow([text(v) for v in row])
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def xlsx_file(
    columns: Sequence[Column | str],
    rows: Iterable[Sequence[Any]],
    *,
    sheet: str,
    directory: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the list to a new temporary .xlsx file and return its path (the caller deletes it,
    see `file_chunks`). Memory stays flat: xlsxwriter keeps one row at a time."""
    handle, name = tempfile.mkstemp(prefix="jiesu-export-", suffix=".xlsx", dir=directory)
    os.close(handle)
    path = Path(name)
    try:
        _write_xlsx(path, [_column(c) for c in columns], rows, sheet=sheet, directory=directory)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _sheet_name(sheet: str, number: int) -> str:
    # Excel: at most 31 characters, none of []:*?/\
    clean = "".join(ch for ch in sheet if ch not in "[]:*?/\\")[:25] or "Sheet"
    return clean if number == 1 else f"{clean}（{number}）"


def _write_xlsx(
    path: Path,
    columns: list[Column],
    rows: Iterable[Sequence[Any]],
    *,
    sheet: str,
    directory: str | os.PathLike[str] | None,
) -> None:
    options: dict[str, Any] = {"constant_memory": True, "in_memory": False}
    if directory is not None:
        options["tmpdir"] = str(directory)
    book = xlsxwriter.Workbook(str(path), options)
    header = book.add_format({"bold": True, "bg_color": "#EEF2F7", "border": 1})
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    day = book.add_format({"num_format": "yyyy-mm-dd"})

    def new_sheet(number: int) -> Any:
        ws = book.add_worksheet(_sheet_name(sheet, number))
        for i, c in enumerate(columns):
            ws.set_column(i, i, c.width)
        for i, c in enumerate(columns):
            ws.write_string(0, i, c.title, header)
        ws.freeze_panes(1, 0)
        return ws

    number, ws, r = 1, new_sheet(1), 1
    try:
        for row in rows:
            if r >= XLSX_MAX_ROWS:
                number += 1
                ws, r = new_sheet(number), 1
            for i, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, bool):
                    ws.write_string(r, i, "是" if value else "否")
                elif isinstance(value, datetime):
                    ws.write_datetime(r, i, _local(value).replace(tzinfo=None), when)
                elif isinstance(value, date):
                    ws.write_datetime(r, i, datetime.combine(value, datetime.min.time()), day)
                elif isinstance(value, int | float):
                    ws.write_number(r, i, value)
                else:  # never a formula: write_string keeps "=…" as text
                    ws.write_string(r, i, str(value)[:XLSX_MAX_TEXT])
            r += 1
    finally:
        book.close()


def file_chunks(path: Path, *, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
    """A temporary file's bytes in chunks. The file is opened and its name removed at once, so
    nothing is left behind even when the download is abandoned before it starts (the space
    returns when the handle closes)."""
    handle = path.open("rb")
    path.unlink()

    def read() -> Iterator[bytes]:
        with handle:
            while data := handle.read(chunk):
                yield data

    return read()
