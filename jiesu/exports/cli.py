"""`jiesu export tickets|rankings|warnings|deliveries --format csv|xlsx --as USERNAME -o FILE`:
the console's exports from the command line, through the same row sources and writers, with the
named user's permissions, scope and masking (and an audit-log entry, as in the console).

`jiesu export parquet OUT`: the assessment facts and anonymised orders for the province
(`exports/parquet.py`, docs/province.md); no user: it is the deployment's own export."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="导出列表（CSV / Excel）：与页面相同的筛选、权限和脱敏。", no_args_is_help=True
)

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="csv | xlsx")]
AsOpt = Annotated[str, typer.Option("--as", help="以该用户的权限导出（用户名）")]
OutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="输出文件；省略则按列表命名")]


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(2)


def run(list_name: str, fmt: str, username: str, output: Path | None, **options: Any) -> Path:
    """One export as the console would send it to `username`; returns the file written."""
    from sqlalchemy import select

    from jiesu.access.permissions import allows
    from jiesu.auth.service import audit, principal_of
    from jiesu.db.engine import from_settings
    from jiesu.errors import DomainError
    from jiesu.exports import service as S
    from jiesu.exports.writers import csv_chunks, xlsx_file
    from jiesu.org.models import Unit, User

    if fmt not in ("csv", "xlsx"):
        _fail("--format 须为 csv 或 xlsx / format must be csv or xlsx")
    db = from_settings()
    try:
        with db.read() as session:
            found = session.execute(
                select(User, Unit).join(Unit, Unit.id == User.unit_id).where(
                    User.username == username, User.active)
            ).first()  # fmt: skip
            if found is None:
                _fail(f"没有这个用户或已停用：{username} / no such active user")
            assert found is not None
            actor = principal_of(*found)
            permission = S.PERMISSION[list_name]
            if not allows(permission, actor.role):
                _fail(f"用户 {username} 的角色无权查看此列表 / this role may not read this list")
            try:
                export = S.build(list_name, actor=actor, db_session=session, **options)
            except DomainError as exc:
                _fail(exc.message)
        with db.write() as session:
            audit("export", db_session=session, user=session.get(User, actor.user_id),
                  list=export.name, format=fmt, filters=export.filters, via="cli")  # fmt: skip

        def rows() -> Iterator[Sequence[Any]]:
            with db.read() as session:
                yield from export.rows(session)

        target = output or Path(f"{export.filename}.{fmt}")
        if fmt == "csv":
            with target.open("wb") as f:
                for chunk in csv_chunks(export.columns, rows()):
                    f.write(chunk)
        else:
            made = xlsx_file(export.columns, rows(), sheet=export.title,
                             directory=target.resolve().parent)  # fmt: skip
            shutil.move(made, target)
        return target
    finally:
        db.dispose()


def _report(path: Path, started: float) -> None:
    took = time.perf_counter() - started
    typer.echo(f"{path}  {path.stat().st_size:,} bytes  {took:.1f} s", err=True)


@app.command("tickets")
def tickets(
    username: AsOpt,
    fmt: FormatOpt = "csv",
    output: OutOpt = None,
    status: Annotated[list[str] | None, typer.Option(help="状态（可多次）")] = None,
    unit: Annotated[str | None, typer.Option(help="单位编码（含下级）")] = None,
    category: Annotated[str | None, typer.Option(help="分类编码（含下级）")] = None,
    text: Annotated[str | None, typer.Option(help="编号、标题或内容")] = None,
    created_from: Annotated[
        str | None, typer.Option("--from", help="受理日期起 YYYY-MM-DD")
    ] = None,
    created_to: Annotated[str | None, typer.Option("--to", help="受理日期止 YYYY-MM-DD")] = None,
    phone: Annotated[str | None, typer.Option(help="诉求人电话（仅热线中心）")] = None,
    sort: Annotated[str, typer.Option(help="-created | created | due | -updated")] = "-created",
) -> None:
    """工单：与 GET /api/v1/tickets 相同的筛选。"""
    started = time.perf_counter()
    try:
        days = [date.fromisoformat(d) if d else None for d in (created_from, created_to)]
    except ValueError:
        _fail("日期须为 YYYY-MM-DD / dates are YYYY-MM-DD")
    path = run("tickets", fmt, username, output, status=status, unit=unit, category=category,
               text=text, created_from=days[0], created_to=days[1], phone=phone,
               sort=sort)  # fmt: skip
    _report(path, started)


@app.command("rankings")
def rankings(
    username: AsOpt,
    fmt: FormatOpt = "csv",
    output: OutOpt = None,
    period: Annotated[str | None, typer.Option(help="月份 YYYY-MM（默认本月）")] = None,
    kind: Annotated[str, typer.Option(help="district | street | department | company")] = "street",
    live: Annotated[bool, typer.Option(help="已冻结月份也看实时数据")] = False,
) -> None:
    """考评排名（三率）：与 GET /api/v1/metrics/units 相同。"""
    started = time.perf_counter()
    _report(run("rankings", fmt, username, output, period=period, kind=kind, live=live), started)


@app.command("warnings")
def warnings(
    username: AsOpt,
    fmt: FormatOpt = "csv",
    output: OutOpt = None,
    status: Annotated[str, typer.Option(help="open | task | dismissed | all")] = "open",
    kind: Annotated[str | None, typer.Option(help="预警类型")] = None,
) -> None:
    """预警：与 GET /api/v1/warnings 相同的范围。"""
    started = time.perf_counter()
    path = run("warnings", fmt, username, output, status=None if status == "all" else status,
               kind=kind)  # fmt: skip
    _report(path, started)


@app.command("deliveries")
def deliveries(
    username: AsOpt,
    fmt: FormatOpt = "csv",
    output: OutOpt = None,
    status: Annotated[
        str | None, typer.Option(help="pending | sending | delivered | dead | skipped")
    ] = None,
    channel: Annotated[str | None, typer.Option(help="webhook | sms | email")] = None,
    subscriber: Annotated[int | None, typer.Option(help="订阅方编号")] = None,
    number: Annotated[str | None, typer.Option(help="工单编号")] = None,
    day_from: Annotated[str | None, typer.Option("--from", help="创建日期起 YYYY-MM-DD")] = None,
    day_to: Annotated[str | None, typer.Option("--to", help="创建日期止 YYYY-MM-DD")] = None,
) -> None:
    """投递记录（仅管理员；电话、邮箱脱敏）：与 系统管理 → 投递记录 相同的筛选。"""
    started = time.perf_counter()
    path = run("deliveries", fmt, username, output, status=status, channel=channel,
               subscriber=subscriber, number=number, day_from=day_from, day_to=day_to)  # fmt: skip
    _report(path, started)


@app.command("parquet")
def parquet(
    out: Annotated[Path, typer.Argument(help="输出目录（按 city=/month= 分区）")],
    first: Annotated[str | None, typer.Option("--from", help="起始月份 YYYY-MM")] = None,
    last: Annotated[str | None, typer.Option("--to", help="截止月份 YYYY-MM")] = None,
    city: Annotated[str | None, typer.Option(help="城市编码（默认取城市包的 code）")] = None,
    with_text: Annotated[
        bool, typer.Option("--with-text", help="附带标题和内容（电话、姓名已遮盖）")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="每批行数")] = 10_000,
) -> None:
    """省级分析用 Parquet：考评事实与脱敏工单（docs/province.md）。"""
    from jiesu.db.engine import from_settings
    from jiesu.exports.parquet import export, month_arg

    started = time.perf_counter()
    try:
        first, last = month_arg(first), month_arg(last)
    except ValueError:
        _fail("月份须为 YYYY-MM / months are YYYY-MM")
    db = from_settings()
    try:
        with db.analysis() as session:  # the read replica where one is set
            stats = export(out, db_session=session, first=first, last=last, city=city,
                           with_text=with_text, batch_size=batch_size)  # fmt: skip
    except ValueError as exc:
        _fail(str(exc))
    finally:
        db.dispose()
    took = time.perf_counter() - started
    rows = ", ".join(f"{k} {v:,}" for k, v in stats.rows.items())
    typer.echo(f"{out}  city={stats.city}  {len(stats.months)} months  {rows}  {took:.1f} s",
               err=True)  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
