"""`jiesu knowledge …`: import/export XLSX, reindex, suggest, expire."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="知识库：导入导出、重建索引、到期检查、建议新增条目。", no_args_is_help=True)


# ---- suggested entries ------------------------------------------------------------------------


@app.command("suggest")
def suggest_command(
    days: int = typer.Option(30, "--days", min=1, max=366, help="How many days back (city days)."),
    today: str = typer.Option("", "--today", help="The last day, YYYY-MM-DD (default: today)."),
) -> None:
    """Cluster the consultations the base could not answer into suggested entries (建议新增条目)."""
    from datetime import date

    from jiesu.cli_support import database, out
    from jiesu.db.base import utcnow
    from jiesu.knowledge.suggest import refresh_suggestions
    from jiesu.settings import city_tz

    day = date.fromisoformat(today) if today else utcnow().astimezone(city_tz()).date()
    with database().write() as session:
        written = refresh_suggestions(db_session=session, today=day, days=days)
    out.print(f"{written} open suggestions for the {days} days to {day}")


# ---- the search index -------------------------------------------------------------------------


@app.command("reindex")
def reindex_command() -> None:
    """Rebuild the search index from every published entry's answering version (重建检索索引)."""
    import time

    from jiesu.cli_support import database, out
    from jiesu.knowledge import encoder
    from jiesu.knowledge.search import reindex_all

    started = time.perf_counter()
    with database().write() as session:
        n = reindex_all(db_session=session)
        encoder.reindex_all(db_session=session)  # nothing when the encoder is off
    out.print(f"已重建检索索引：{n} 条已发布条目，用时 {time.perf_counter() - started:.1f} 秒",
              markup=False)  # fmt: skip


# ---- expiry -----------------------------------------------------------------------------------


@app.command("expire")
def expire_command(
    today: str = typer.Option("", "--today", help="The city's day, YYYY-MM-DD (default: today)."),
) -> None:
    """Expire the entries past their last day and warn the owners of those ending within 30 days
    (what the worker does every ten minutes)."""
    from datetime import date

    from jiesu.cli_support import database, out
    from jiesu.db.base import utcnow
    from jiesu.knowledge.service import city_today, expire_due, warn_expiring

    try:
        day = date.fromisoformat(today) if today else city_today(utcnow())
    except ValueError as exc:
        raise typer.BadParameter("YYYY-MM-DD", param_hint="--today") from exc
    with database().write() as session:
        expired = expire_due(db_session=session, today=day)
        warned = warn_expiring(db_session=session, today=day)
    out.print(f"{day}: {expired} entries expired, {warned} owners warned of entries ending soon")


# ---- XLSX import and export -------------------------------------------------------------------


def _actor(username: str) -> object:
    """The named active user as a Principal, or exit 2 with a Chinese reason."""
    from sqlalchemy import select

    from jiesu.auth.service import principal_of
    from jiesu.cli_support import database, err
    from jiesu.org.models import Unit, User

    db = database()
    try:
        with db.read() as session:
            found = session.execute(
                select(User, Unit).join(Unit, Unit.id == User.unit_id)
                .where(User.username == username, User.active)
            ).first()  # fmt: skip
            if found is None:
                err.print(f"没有这个用户或已停用：{username}", markup=False)
                raise typer.Exit(2)
            return principal_of(*found)
    finally:
        db.dispose()


@app.command("export")
def export_command(
    file: Path = typer.Argument(..., help="写入的 .xlsx 文件 / the file to write", dir_okay=False),
    as_user: str = typer.Option(
        "", "--as", help="以该用户的权限导出（用户名）；不填则导出全部条目（服务器上的管理员）"
    ),
    status: str = typer.Option(
        "", "--status", help="只导出该状态：draft|published|withdrawn|expired"
    ),
    category: str = typer.Option("", "--category", help="分类编码（含下级）"),
    owner: str = typer.Option("", "--owner", help="主管单位编码（含下级）"),
    demo: str = typer.Option("", "--demo", help="1 只导出演示内容，0 不含演示内容"),
) -> None:
    """导出知识库条目为 Excel（与导入相同的列）/ export entries as XLSX."""
    from jiesu.access.permissions import allows
    from jiesu.access.policy import Principal
    from jiesu.cli_support import database, err, out
    from jiesu.db.base import utcnow
    from jiesu.knowledge import xlsx
    from jiesu.knowledge.models import ENTRY_STATUSES
    from jiesu.settings import city_tz

    if as_user:
        actor = _actor(as_user)
    else:  # whoever runs the command on the server reads the whole base, as the centre does
        actor = Principal(user_id=0, username="", name="命令行", role="admin", unit_id=0,
                          unit_path="/", unit_function="service_centre")  # fmt: skip
    assert isinstance(actor, Principal)
    if not allows("knowledge.read", actor.role):
        err.print(f"用户 {as_user} 无权查看知识库", markup=False)
        raise typer.Exit(2)
    if status and status not in ENTRY_STATUSES:
        raise typer.BadParameter("draft|published|withdrawn|expired", param_hint="--status")
    f = xlsx.EntryFilter(status=status if xlsx.sees_drafts(actor) else "", category=category,
                         owner=owner, demo=demo if demo in ("0", "1") else "")  # fmt: skip
    if not xlsx.sees_drafts(actor) and status not in ("", "published"):
        f.status = "published"
    today = utcnow().astimezone(city_tz()).date()
    db = database()
    try:
        with db.read() as session:
            n = xlsx.write_xlsx(f, file, actor=actor, db_session=session, today=today)
    finally:
        db.dispose()
    out.print(f"已导出 {n} 条 → {file}", markup=False)


@app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="Excel（.xlsx）文件", exists=True, dir_okay=False),
    as_user: str = typer.Option(..., "--as", help="以该用户的身份导入（用户名，须有导入权限）"),
    commit: bool = typer.Option(False, "--commit", help="写入数据库（默认只校验）"),
) -> None:
    """导入知识库条目（先校验；--commit 且无错误才写入）/ import entries from XLSX."""
    from jiesu.access.permissions import allows
    from jiesu.access.policy import Principal
    from jiesu.cli_support import database, err, out
    from jiesu.db.base import utcnow
    from jiesu.errors import DomainError
    from jiesu.knowledge import xlsx

    actor = _actor(as_user)
    assert isinstance(actor, Principal)
    if not allows("knowledge.import", actor.role):
        err.print(f"用户 {as_user} 的角色无权导入知识库", markup=False)
        raise typer.Exit(2)
    data = file.read_bytes()
    db = database()
    try:
        if not commit:
            with db.read() as session:
                report = xlsx.check(data, actor=actor, db_session=session)
        else:
            try:
                with db.write() as session:
                    report = xlsx.check(data, actor=actor, db_session=session)
                    xlsx.commit(report, actor=actor, db_session=session, now=utcnow())
            except DomainError as exc:
                err.print(f"写入失败，未写入任何数据：{exc.message}", markup=False)
                raise typer.Exit(1) from None
    finally:
        db.dispose()
    for line, column, reason in report.errors[:200]:
        out.print(f"第 {line} 行  {column}：{reason}", markup=False, highlight=False)
    if len(report.errors) > 200:
        out.print(f"…… 另有 {len(report.errors) - 200} 处错误", markup=False)
    out.print(f"共 {report.rows} 行：新建 {report.new}，更新 {report.changed}，未变 "
              f"{report.unchanged}；错误 {len(report.errors)} 处（{report.bad_rows} 行）",
              markup=False)  # fmt: skip
    if report.committed:
        out.print(f"已写入：新建 {report.created}，更新 {report.updated}", markup=False)
    elif commit and report.errors:
        out.print("有错误，未写入任何数据", markup=False)
    elif not commit:
        out.print("仅校验，未写入（加 --commit 写入）", markup=False)
    if report.errors:
        raise typer.Exit(1)
