"""`jiesu import FILE --mapping MAPPING.yaml [--commit]`: historical orders from xlsx or CSV.

Checks every row first and prints the errors (row, column, reason; the first 50 on screen, all
of them in the report CSV); writes only with `--commit`, and then nothing at all if any row is
wrong, unless `--skip-errors` (the wrong rows are left out and listed). docs/import.md.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Annotated

import typer

SHOWN = 50


def import_command(
    file: Annotated[
        Path, typer.Argument(help="xlsx 或 CSV 文件 / the file", exists=True, dir_okay=False)
    ],
    mapping: Annotated[
        Path, typer.Option("--mapping", help="映射 YAML / the mapping", exists=True, dir_okay=False)
    ],
    commit: Annotated[bool, typer.Option("--commit", help="写入数据库（默认只校验）")] = False,
    source: Annotated[
        str | None, typer.Option("--source", help="来源名（默认取映射的 source）")
    ] = None,
    skip_errors: Annotated[
        bool, typer.Option("--skip-errors", help="有错误行时仍写入其余各行（错误行跳过并列出）")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="完整报告 CSV（默认：文件旁 FILE.report.csv）")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="不显示进度条")] = False,
) -> None:
    """导入历史工单 / import historical orders (validate; --commit writes)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from jiesu.db.engine import from_settings
    from jiesu.imports import service
    from jiesu.imports.mapping import MappingError, load_mapping

    out, err = Console(), Console(stderr=True)
    try:
        spec = load_mapping(mapping)
    except MappingError as exc:
        err.print(f"[red]映射错误[/]：{exc}")
        raise typer.Exit(2) from None
    source = source or spec.source
    db = from_settings()
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   console=err, disable=quiet)  # fmt: skip
    started = time.perf_counter()
    try:
        with bar:
            task = bar.add_task("校验", total=None)
            with db.read() as session:
                result = service.check(file, spec, db_session=session, source=source,
                                       progress=lambda n: bar.update(task, completed=n))  # fmt: skip
            bar.update(task, total=result.rows, completed=result.rows)
            checked = time.perf_counter() - started
            write = commit and (not result.errors or skip_errors) and bool(result.valid)
            if write:
                task = bar.add_task("写入", total=len(result.valid))
                with db.write() as session:
                    service.commit(result, spec, db_session=session, source=source,
                                   progress=lambda n: bar.update(task, completed=n))  # fmt: skip
    finally:
        db.dispose()
    seconds = time.perf_counter() - started
    target = report or file.with_name(file.name + ".report.csv")
    if result.errors or result.warnings:
        with target.open("w", encoding="utf-8-sig", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["行", "列", "原因", "级别"])
            w.writerows([(*e, "错误") for e in result.errors])
            w.writerows([(*e, "提示") for e in result.warnings])
    for line, column, reason in result.errors[:SHOWN]:
        out.print(f"第 {line} 行  {column}：{reason}", markup=False, highlight=False)
    if len(result.errors) > SHOWN:
        out.print(f"…… 另有 {len(result.errors) - SHOWN} 条错误，见 {target}", markup=False)
    for line, _column, reason in result.warnings[:SHOWN]:
        out.print(f"提示：第 {line} 行  {reason}", markup=False, highlight=False)
    out.print(
        f"共 {result.rows} 行：有效 {len(result.valid)} 行，错误 {len(result.errors)} 条"
        f"（{result.bad_rows} 行）；校验 {checked:.1f} 秒",
        markup=False,
    )
    if result.committed:
        out.print(f"已写入（来源 {source}）：新建 {result.created}，更新 {result.updated}，"
                  f"未变 {result.unchanged}；共 {seconds:.1f} 秒", markup=False)  # fmt: skip
    elif commit and result.errors and not skip_errors:
        out.print("有错误，未写入任何数据（修正后重试，或用 --skip-errors 跳过错误行）",
                  markup=False)  # fmt: skip
    elif not commit:
        out.print("仅校验，未写入（加 --commit 写入）", markup=False)
    if result.errors or result.warnings:
        out.print(f"完整报告：{target}", markup=False)
    if result.errors and not (result.committed and skip_errors):
        raise typer.Exit(1)
