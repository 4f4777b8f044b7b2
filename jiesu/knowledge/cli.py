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
