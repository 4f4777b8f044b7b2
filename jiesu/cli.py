"""The `jiesu` command: the root of the command line. It registers each package's sub-commands
(`intel/cli.py`, `reports/cli.py`, …); they never import it back: what they share is in
`cli_support.py` (the database, the consoles)."""

from __future__ import annotations

import os
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from jiesu.cli_support import database as _db
from jiesu.cli_support import err, out
from jiesu.exports.cli import app as export_app
from jiesu.imports.cli import import_command
from jiesu.intel.cli import app as intel_app
from jiesu.knowledge.cli import app as knowledge_app
from jiesu.reports.cli import metrics_app, report_app, warnings_app
from jiesu.settings import REPO_ROOT, get_settings

app = typer.Typer(
    help="jiesu 接诉即办 — a platform for a city's 12345 citizen service hotline.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
db_app = typer.Typer(help="Database schema: create and migrate (Alembic).", no_args_is_help=True)
pack_app = typer.Typer(
    help="City packs: check and load a city's organisation, taxonomy and rules.",
    no_args_is_help=True,
)
demo_app = typer.Typer(help="The Beijing demo city and its history.", no_args_is_help=True)
user_app = typer.Typer(help="Users and API tokens.", no_args_is_help=True)
docs_app = typer.Typer(help="Documents generated from the code.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(pack_app, name="citypack")
app.add_typer(demo_app, name="demo")
app.add_typer(user_app, name="user")
app.add_typer(docs_app, name="docs")
app.add_typer(intel_app, name="intel")
app.add_typer(metrics_app, name="metrics")
app.add_typer(report_app, name="report")
app.add_typer(warnings_app, name="warnings")
app.add_typer(export_app, name="export")
app.add_typer(knowledge_app, name="knowledge")
app.command("import")(import_command)

DEMO_PACK = REPO_ROOT / "citypacks" / "beijing"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (keep it below 32768).")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (several: one socket each, SO_REUSEPORT).")
    ] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
) -> None:
    """Run the web server (API, console, portal).

    X-Forwarded-For/-Proto are believed only from JIESU_TRUSTED_PROXIES (none by default)."""
    from jiesu.web.serving import serve as run_server

    try:
        trusted = get_settings().trusted_proxies
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    status = run_server(
        host=host, port=port, workers=workers, reload=reload, trusted_proxies=trusted
    )
    raise typer.Exit(status)


@app.command()
def worker(
    interval: Annotated[float, typer.Option(help="Seconds to wait when no job is due.")] = 5.0,
    once: Annotated[bool, typer.Option(help="Do what is due now, then stop.")] = False,
) -> None:
    """Run the worker: due timers (80% warnings, overdue notices), deliveries of the outbox
    (webhooks, SMS, e-mail), reports owed and the warnings scan. SIGTERM stops it after the
    step under way."""
    from jiesu.ops.logs import configure
    from jiesu.worker import work

    try:
        configure(get_settings().log_format)  # JSON lines, or text (JIESU_LOG_FORMAT)
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    work(_db(), interval=interval, once=once)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Create the database or bring it up to REVISION."""
    from jiesu.db.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    out.print(f"[green]database at {revision}[/]: {_safe_url()}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. base.")],
) -> None:
    """Step the schema back to REVISION (base drops everything)."""
    from jiesu.db.migrate import downgrade

    downgrade(get_settings().database_url, revision)
    out.print(f"[yellow]database at {revision}[/]")


@db_app.command("backup")
def db_backup(
    out_file: Annotated[Path, typer.Argument(metavar="OUT", help="The backup archive to write.")],
) -> None:
    """Write one archive: a consistent copy of the database (SQLite online copy, or pg_dump),
    the var dir's uploads, knowledge imports and secret.key, and a manifest with checksums."""
    from jiesu.db.backup import COUNTED, BackupError, backup

    var_dir = get_settings().var_dir
    try:
        manifest = backup(get_settings().database_url, out_file, var_dir=var_dir)
    except BackupError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from e
    size = out_file.stat().st_size
    out.print(f"[green]备份完成 / backed up[/] {_safe_url()} + {var_dir} → {out_file} "
              f"({size:,} bytes)")  # fmt: skip
    labels = {table: label for label, table in COUNTED}
    for table, n in manifest["counts"].items():
        out.print(f"  {labels.get(table, table)}: {n:,}")
    files = manifest["files"]
    out.print(f"  files: {len(files):,} ({sum(f['size'] for f in files):,} bytes)")
    out.print(f"  secret key: {manifest['secret_key']}")
    out.print(f"  Alembic: {manifest['alembic']}")
    if manifest["secret_key"] == "env":
        out.print("[yellow]签名密钥来自 JIESU_SECRET_KEY，不在备份中：请另行保管 / the signing key "
                  "comes from JIESU_SECRET_KEY and is not in the backup: keep it apart[/]")  # fmt: skip


@db_app.command("restore")
def db_restore(
    file: Annotated[Path, typer.Argument(help="A file written by `jiesu db backup`.")],
    into: Annotated[
        str | None, typer.Option("--into", help="Target database URL (default: the deployment's).")
    ] = None,
    var_dir: Annotated[
        Path | None,
        typer.Option("--var-dir", help="Where the files go (default: the deployment's var dir)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Overwrite a database that holds tables, and differing files."
        ),
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Only verify the archive's checksums; write nothing.")
    ] = False,
) -> None:
    """Restore a backup (database and files), then bring the database to the code's schema."""
    from sqlalchemy.engine import make_url

    from jiesu.db.backup import COUNTED, BackupError, restore, verify

    if check:
        try:
            manifest = verify(file)
        except BackupError as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(1) from e
        out.print(f"[green]校验通过 / verified[/] {file}: {manifest['backend']}, jiesu "
                  f"{manifest['jiesu']} (commit {manifest.get('commit') or '?'}), "
                  f"{manifest['created_at']}")  # fmt: skip
        labels = {table: label for label, table in COUNTED}
        for table, n in manifest["counts"].items():
            out.print(f"  {labels.get(table, table)}: {n:,}")
        out.print(f"  files: {len(manifest['files']):,}")
        out.print(f"  Alembic: {manifest['alembic']}")
        return
    target = into or get_settings().database_url
    files_to = var_dir or get_settings().var_dir
    try:
        done = restore(file, target, force=force, var_dir=files_to)
    except BackupError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from e
    out.print(f"[green]恢复完成 / restored[/] {file} → "
              f"{make_url(target).render_as_string(hide_password=True)}")  # fmt: skip
    for label, n in done.counts.items():
        out.print(f"  {label}: {n:,}")
    out.print(f"  Alembic: {done.revision}")
    if done.manifest is None:
        out.print("[yellow]旧格式备份（仅数据库）：uploads/、secret.key、knowledge_imports/ 需另行恢复 / "
                  "a database-only backup (first format): put uploads/, secret.key and "
                  "knowledge_imports/ back by hand[/]")  # fmt: skip
    else:
        out.print(f"  files → {files_to}: {done.files:,} written, {done.files_same:,} already "
                  f"there (checksums verified; counts equal to the manifest's)")  # fmt: skip
        if done.manifest["secret_key"] == "env":
            out.print("[yellow]旧机器的签名密钥来自 JIESU_SECRET_KEY：请在本机设置同一值 / the old "
                      "machine signed with JIESU_SECRET_KEY: set the same value here[/]")  # fmt: skip
    if done.upgraded:
        out.print(f"[yellow]备份比程序旧，已升级到 {done.head} / the backup was older than the code: "
                  f"upgraded to {done.head}[/]")  # fmt: skip


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)


def _read_or_exit(directory: Path):  # type: ignore[no-untyped-def]
    from jiesu.citypack.parse import read_pack

    pack = read_pack(directory)
    if not pack.ok:
        # Plain lines, never wrapped: each error must read (and grep) as one file:line: reason.
        for e in pack.errors:
            typer.echo(f"error {e}", err=True)
        typer.echo(f"{len(pack.errors)} error(s) in {directory}: nothing loaded", err=True)
        raise typer.Exit(1)
    return pack


@pack_app.command("check")
def citypack_check(directory: Annotated[Path, typer.Argument(help="The pack folder.")]) -> None:
    """Validate a city pack; print every error with file, line and reason."""
    pack = _read_or_exit(directory)
    out.print(
        f"[green]ok[/] {directory}: {len(pack.units)} units, {len(pack.categories)} categories, "
        f"{len(pack.dispatch)} dispatch rules, {len(pack.users)} users"
    )


@pack_app.command("load")
def citypack_load(directory: Annotated[Path, typer.Argument(help="The pack folder.")]) -> None:
    """Validate and load a city pack in one transaction (safe to re-run)."""
    from jiesu.citypack.load import load_pack

    pack = _read_or_exit(directory)
    with _db().write() as session:
        stats = load_pack(pack, db_session=session)
    changes = ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "no changes"
    out.print(f"[green]loaded[/] {pack.settings['name']} ({directory}): {changes}")
    _warn_on_zone(pack.settings.get("timezone"))
    _warn_on_calendar()


@pack_app.command("export")
def citypack_export(
    directory: Annotated[Path, typer.Argument(help="The folder to write the pack into.")],
) -> None:
    """Write the city as it now stands (settings, units, categories, catalogue, users without
    passwords, calendar, places) as a city pack that `jiesu citypack load` reads."""
    from jiesu.citypack.export import export_pack

    with _db().read() as session:
        stats = export_pack(directory, db_session=session)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(stats.items()))
    out.print(f"[green]exported[/] {directory}: {counts}")


def _warn_on_calendar() -> None:
    from datetime import datetime

    from jiesu.settings import city_tz
    from jiesu.taxonomy.service import calendar_warnings

    with _db().read() as session:
        today = datetime.now(city_tz()).date()
        for warning in calendar_warnings(db_session=session, today=today):
            typer.echo(f"warning: {warning}", err=True)


def _warn_on_zone(zone: str | None) -> None:
    deployed = get_settings().timezone
    if zone and zone != deployed:
        typer.echo(
            f"warning: the pack's time zone is {zone} but this deployment shows times in "
            f"{deployed}; set JIESU_TIMEZONE={zone}",
            err=True,
        )


@demo_app.command("generate")
def demo_generate(
    days: Annotated[int, typer.Option(help="Days of history, ending today.")] = 30,
    per_day: Annotated[int, typer.Option(help="Tickets per day on average.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same history).")] = 12345,
    end: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD), default today.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Write realistic tickets with their whole history for the loaded demo city."""
    from jiesu.demo.generate import generate

    last = date.fromisoformat(end) if end else None
    db = _db()
    result = generate(db, days=days, per_day=per_day, seed=seed, end=last, progress=progress)
    out.print(
        f"[green]generated[/] {result.tickets:,} tickets, {result.events:,} events in "
        f"{result.seconds:.1f} s ({result.tickets / max(result.seconds, 1e-9):,.0f} tickets/s); "
        f"assessment rollups rebuilt in {result.metrics_seconds:.1f} s"
    )


@demo_app.command("init")
def demo_init(
    days: Annotated[
        int | None,
        typer.Option(
            help="Days of history generated on first run (default: from the 1st of the"
            " month two months back, so last month and the one before are complete)."
        ),
    ] = None,
    per_day: Annotated[int, typer.Option(help="Tickets per day on average.")] = 1000,
) -> None:
    """Set up the demo once: migrate, load the Beijing pack, generate history if none yet."""
    from sqlalchemy import func, select

    from jiesu.citypack.load import load_pack
    from jiesu.db.migrate import upgrade
    from jiesu.tickets.models import Ticket

    upgrade(get_settings().database_url)
    pack = _read_or_exit(DEMO_PACK)
    db = _db()
    with db.write() as session:
        stats = load_pack(pack, db_session=session)
    _warn_on_zone(pack.settings.get("timezone"))
    _warn_on_calendar()
    if stats:
        out.print(f"loaded the Beijing demo pack: {sum(stats.values())} changes")
    _load_demo_knowledge(db)
    with db.read() as session:
        existing = session.scalar(select(func.count()).select_from(Ticket)) or 0
    if existing == 0:
        if days is None:
            from datetime import datetime

            from jiesu.demo.generate import default_days
            from jiesu.settings import city_tz

            days = default_days(datetime.now(city_tz()).date())
        out.print(f"generating {days} days of demo history (about {days * per_day:,} tickets) …")
        demo_generate(
            days=days, per_day=per_day, seed=12345, end=None, progress=sys.stdout.isatty()
        )
    else:
        out.print(f"demo history present: {existing:,} tickets")
    _train_demo_models(db)
    if existing == 0:  # the warnings page filled from the first start (the planted events)
        _scan_demo_warnings(db)
        _suggest_demo_entries(db)


def _load_demo_knowledge(db: Any) -> None:
    """The demo knowledge base (`citypacks/beijing/demo_knowledge/`): entries not yet loaded are
    published, marked demo content, before the history that answers with them."""
    from jiesu.db.base import utcnow
    from jiesu.demo.knowledge import DemoKnowledgeError, load_demo_base

    try:
        added = load_demo_base(db, DEMO_PACK, now=utcnow())
    except DemoKnowledgeError as exc:
        out.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    if added:
        out.print(f"knowledge base: {added} demo entries published")


def _suggest_demo_entries(db: Any) -> None:
    """The base learns from the demo history: consultations answered without an entry or
    dispatched, clustered into suggested entries (what the worker's nightly step does)."""
    from datetime import datetime

    from jiesu.knowledge.suggest import refresh_suggestions
    from jiesu.settings import city_tz

    with db.write() as session:
        written = refresh_suggestions(db_session=session, today=datetime.now(city_tz()).date())
    out.print(f"knowledge base: {written} suggested entries from the history")


def _scan_demo_warnings(db: Any) -> None:
    """The early-warning scan of the last three days, as the worker's hourly scan would have
    run them (the planted storm was yesterday)."""
    from datetime import datetime

    from jiesu.analysis.service import scan_recent
    from jiesu.settings import city_tz

    with db.write() as session:
        new = scan_recent(datetime.now(city_tz()).date(), db_session=session)
    out.print(f"early warnings: {sum(new.values())} new")


def _train_demo_models(db: Any) -> None:
    """Smart dispatch on from the first ticket: the intake models trained on the demo history
    and activated, unless active ones exist (a second `demo init` does not retrain)."""
    import time

    from jiesu.intel.service import KINDS, train_missing_models

    start = time.perf_counter()
    done = train_missing_models(db)
    if not done:
        return
    parts = [
        f"{KINDS[t.kind]} v{row.version} macro-F1 {t.evaluation['macro_f1']:.3f}"
        f" accuracy {t.evaluation['accuracy']:.3f}"
        for t, row in done
    ]
    first = done[0][0]
    out.print(
        f"trained and activated the intake models on {first.history_rows:,} handled tickets"
        f" ({first.holdout_rows:,} held out for the evaluation): {'; '.join(parts)}"
        f" — {time.perf_counter() - start:.0f} s"
    )


@demo_app.command("logins")
def demo_logins() -> None:
    """Print the demo users and their password."""
    from jiesu.citypack.parse import read_pack
    from jiesu.org.models import ROLE_NAMES, Role

    pack = read_pack(DEMO_PACK)
    table = Table(title="演示账号 demo logins", show_lines=False)
    for col in ("用户名", "密码", "角色", "单位", "姓名"):
        table.add_column(col)
    names = {u.code: u.short_name or u.name for u in pack.units}
    for u in pack.users:
        table.add_row(
            u.username,
            u.password or "",
            ROLE_NAMES[Role(u.role)],
            names.get(u.unit, u.unit),
            u.name,
        )
    out.print(table)


@user_app.command("token")
def user_token(
    username: Annotated[str, typer.Argument(help="The user the system acts as.")],
    name: Annotated[
        str, typer.Option(help="What the token is for, e.g. wechat-gateway.")
    ] = "system",
    days: Annotated[int, typer.Option(help="Valid for this many days (0: no expiry).")] = 365,
) -> None:
    """Issue an API token for a channel system (printed once; only its hash is stored)."""
    from sqlalchemy import select

    from jiesu.auth.service import issue_token
    from jiesu.org.models import User

    with _db().write() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            err.print(f"no user {username}")
            raise typer.Exit(1)
        token, expires = issue_token(
            user,
            db_session=session,
            ttl=timedelta(days=days) if days else None,
            kind="system",
            name=name,
        )
    out.print(token)
    err.print(f"expires: {expires or 'never'}")


LIFECYCLE_DOC = REPO_ROOT / "docs" / "lifecycle.md"


@docs_app.command("lifecycle")
def docs_lifecycle(
    check: Annotated[bool, typer.Option(help="Only check that the file is up to date.")] = False,
) -> None:
    """Write docs/lifecycle.md (states, actions, diagram) from the lifecycle table."""
    from jiesu.tickets.lifecycle import render_markdown

    text = render_markdown()
    if check:
        current = LIFECYCLE_DOC.read_text(encoding="utf-8") if LIFECYCLE_DOC.exists() else ""
        if current != text:
            typer.echo(f"{LIFECYCLE_DOC} is stale: run `jiesu docs lifecycle`", err=True)
            raise typer.Exit(1)
        out.print(f"{LIFECYCLE_DOC} is up to date")
        return
    LIFECYCLE_DOC.write_text(text, encoding="utf-8")
    out.print(f"wrote {LIFECYCLE_DOC}")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
