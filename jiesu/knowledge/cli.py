"""`jiesu knowledge …`: import/export XLSX (part 5), reindex (part 2), suggest (part 6), expire
(part 1). Each part adds its own commands here, in its own function."""

from __future__ import annotations

import typer

app = typer.Typer(help="知识库：导入导出、重建索引、到期检查、建议新增条目。", no_args_is_help=True)


# ---- part 6: suggested entries ------------------------------------------------------------------


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


# ---- part 1: expiry ---------------------------------------------------------------------------


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
