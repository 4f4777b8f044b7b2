"""`jiesu metrics …`, `jiesu report …` and `jiesu warnings …`: the assessment and analysis from
the command line (the worker does the same on schedule)."""

from __future__ import annotations

import json
import re
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from jiesu.cli_support import database, out

metrics_app = typer.Typer(help="The assessment's rollups (三率).", no_args_is_help=True)
report_app = typer.Typer(help="Daily, weekly and monthly reports.", no_args_is_help=True)
warnings_app = typer.Typer(help="Early warnings (预警).", no_args_is_help=True)


def _today() -> date:
    from jiesu.db.base import utcnow
    from jiesu.settings import city_tz

    return utcnow().astimezone(city_tz()).date()


@metrics_app.command("rebuild")
def metrics_rebuild(
    check: Annotated[bool, typer.Option(help="Compare with the maintained rollups first.")] = False,
) -> None:
    """Recompute every fact and rollup from the events (in one transaction)."""
    from jiesu.assessment.service import rebuild, snapshot

    db = database()
    before = None
    if check:
        with db.read() as session:
            before = snapshot(db_session=session)
    started = time.perf_counter()
    with db.write() as session:
        stats = rebuild(db_session=session)
    out.print(f"[green]rebuilt[/] {stats} in {time.perf_counter() - started:.1f} s")
    if before is not None:
        with db.read() as session:
            after = snapshot(db_session=session)
        same = before == after
        out.print("[green]maintained == rebuilt[/]" if same else "[red]maintained != rebuilt[/]")
        if not same:
            raise typer.Exit(1)


@metrics_app.command("freeze")
def metrics_freeze(
    period: Annotated[str, typer.Option(help="Freeze this month now, e.g. 2026-10.")] = "",
) -> None:
    """Freeze (publish) the months past the pack's cut-off, or one month now; once each."""
    from jiesu.assessment.service import freeze, freeze_due

    with database().write() as session:
        if period:
            if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", period):
                raise typer.BadParameter("月份格式为 YYYY-MM / month as YYYY-MM")
            freeze(period, db_session=session)
            done = [period]
        else:
            done = freeze_due(db_session=session)
    out.print(f"[green]frozen[/] {', '.join(done) or 'nothing due'}")


@metrics_app.command("show")
def metrics_show(
    period: Annotated[str, typer.Option(help="Month, e.g. 2026-10.")] = "",
    group: Annotated[
        str, typer.Option(help="district | street | department | company")
    ] = "district",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The month's ranking of one kind of unit."""
    from jiesu.assessment.service import rankings

    period = period or f"{_today().replace(day=1) - timedelta(days=1):%Y-%m}"
    with database().analysis() as session:
        r = rankings(period, group, db_session=session)
    rows = [
        {"rank": x.rank, "code": x.code, "name": x.name, "orders": x.orders,
         **{k: x.rates[k].value for k in ("response", "resolution", "satisfaction")},
         "composite": x.composite, "change": x.change, "task_force": x.task_force,
         "small_sample": x.small_sample}
        for x in r.rows
    ]  # fmt: skip
    if as_json:
        print(json.dumps({"period": period, "group": group, "rows": rows}, ensure_ascii=False))
        return
    table = Table("名次", "单位", "工单", "响应率", "解决率", "满意率", "综合", "较上月", "")
    for x in rows:
        pct = [f"{x[k] * 100:.2f}%" if x[k] is not None else "—"
               for k in ("response", "resolution", "satisfaction")]  # fmt: skip
        table.add_row(
            str(x["rank"] or "—"), str(x["name"]), str(x["orders"]), *pct,
            f"{x['composite']:.2f}" if x["composite"] is not None else "—",
            "—" if x["change"] is None else f"{x['change']:+d}",
            "专班" if x["task_force"] else ("样本不足" if x["small_sample"] else ""),
        )  # fmt: skip
    out.print(table)


def _report(kind: str, period: str, out_dir: Path | None, district: str = "") -> None:
    from jiesu.reports.build import build_on, period_of

    if not period:
        day = _today() - timedelta(days=1)
        if kind == "monthly":
            day = _today().replace(day=1) - timedelta(days=1)
        elif kind == "weekly":
            day = _today() - timedelta(days=_today().isoweekday())
        period = period_of(kind, day)
    if district:
        _district_report(kind, period, district, out_dir)
        return
    from jiesu.errors import DomainError

    try:  # the figures read on the read replica where one is set, stored on the primary
        _, composed = build_on(database(), kind, period)
        title, seconds = composed.title, composed.seconds
        files = {"html": composed.html.encode(), "pdf": composed.pdf, "xlsx": composed.xlsx}
    except DomainError as exc:  # a bad period, or a character the report font cannot draw
        out.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from exc
    out.print(f"[green]built[/] {title} in {seconds:.1f} s (stored; listed in the console)")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for ext, data in files.items():
            path = out_dir / f"{kind}-{period}.{ext}"
            path.write_bytes(data)
            out.print(f"  {path}")


def _district_report(kind: str, period: str, district: str, out_dir: Path | None) -> None:
    """A district's own report: built and written, never stored (the console builds it when a
    district reader opens it)."""
    from jiesu.assessment.service import unit_index
    from jiesu.reports.build import render_district

    if out_dir is None:
        raise typer.BadParameter(
            "a district's report is not stored: give --out", param_hint="--out"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with database().analysis() as session:
        unit = unit_index(db_session=session).by_code.get(district)
        if unit is None or unit.kind != "district":
            raise typer.BadParameter(f"no such district: {district}", param_hint="--district")
        for ext in ("html", "pdf", "xlsx"):
            data = render_district(kind, period, unit, ext, db_session=session)
            path = out_dir / f"{kind}-{period}-{district}.{ext}"
            path.write_bytes(data.encode() if isinstance(data, str) else data)
            out.print(f"  {path}")


PeriodOpt = Annotated[str, typer.Option(help="The period (default: the last complete one).")]
DistrictOpt = Annotated[str, typer.Option(help="A district's own report (its code), not stored.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Also write HTML, PDF and Excel here.")]


@report_app.command("daily")
def report_daily(period: PeriodOpt = "", out_dir: OutOpt = None,
                 district: DistrictOpt = "") -> None:  # fmt: skip
    """The daily bulletin (日通报), e.g. --period 2026-11-03."""
    _report("daily", period, out_dir, district)


@report_app.command("weekly")
def report_weekly(period: PeriodOpt = "", out_dir: OutOpt = None,
                  district: DistrictOpt = "") -> None:  # fmt: skip
    """The weekly summary (周汇总), e.g. --period 2026-W45."""
    _report("weekly", period, out_dir, district)


@report_app.command("monthly")
def report_monthly(period: PeriodOpt = "", out_dir: OutOpt = None,
                   district: DistrictOpt = "") -> None:  # fmt: skip
    """The monthly analysis (月度分析), e.g. --period 2026-10."""
    _report("monthly", period, out_dir, district)


@warnings_app.command("scan")
def warnings_scan(
    day: Annotated[str, typer.Option(help="City-local day, e.g. 2026-11-03 (default today).")] = "",
) -> None:
    """Run every detector for DAY and store the new warnings."""
    from jiesu.analysis.service import scan

    when = date.fromisoformat(day) if day else _today()
    started = time.perf_counter()
    with database().write() as session:
        new = scan(when, db_session=session)
    out.print(f"[green]{when}[/]: new warnings {new or 'none'} "
              f"({time.perf_counter() - started:.1f} s)")  # fmt: skip
