"""The restore procedure of docs/operations.md, run as written (issue 17: "a newcomer can restore a
backup on a fresh machine following docs/operations.md alone").

The doc's fenced blocks marked ```sh {#name} are taken from the file, not copied here: the old
machine's `{#backup}` block backs up a generated history with photos, a knowledge import and a
signing key; then `{#restore-env-<database>}`, `{#restore}` and `{#restore-check}` run in a
clean environment with only the replacements the doc lists (the checkout, the var dir, the
archive, the database URL, the port). Whatever came back is then checked row for row, figure for
figure and byte for byte, and a rating link signed before the backup still verifies. Edit the
doc's commands and this test runs the edited ones.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from sqlalchemy import text

from jiesu.callbacks import links
from jiesu.db.engine import Database
from jiesu.demo.generate import generate
from jiesu.settings import REPO_ROOT, get_settings
from jiesu.tickets.models import Event, Ticket
from tests.conftest import IN_CI, TINY_PACK, PgDatabases
from tests.test_backup import (
    HISTORY_END,
    MONTH,
    figures,
    put_files,
    require_pg_tools,
    rows,
    use_var_dir,
)

DOC = REPO_ROOT / "docs" / "operations.md"
BLOCK = re.compile(r"^(?P<indent> *)```sh \{#(?P<name>[a-z0-9-]+)\}\n(?P<body>.*?)^(?P=indent)```",
                   re.M | re.S)  # fmt: skip
# The placeholders the doc tells the newcomer to replace, and nothing else.
CHECKOUT, VAR_DIR, ARCHIVE, BACKUPS = (
    "/opt/jiesu",
    "/var/lib/jiesu",
    "/backups/jiesu.backup",
    "/backups",
)
PG_URL = "postgresql+psycopg://jiesu:SECRET@127.0.0.1:5432/jiesu"
PORT = "8000"
DOC_MONTH = "2026-11"  # the month the doc's check ranks: the generated history's


def blocks() -> dict[str, str]:
    found = {}
    for m in BLOCK.finditer(DOC.read_text()):
        assert m["name"] not in found, f"two blocks named {{#{m['name']}}} in {DOC}"
        found[m["name"]] = textwrap.dedent(m["body"])
    return found


def replaced(script: str, **values: str) -> str:
    """The doc's own replacements, in one pass (a value is never replaced again), the longest
    placeholder first (the archive before its folder)."""
    pairs = {ARCHIVE: values["archive"], BACKUPS: values["backups"], PG_URL: values["url"],
             VAR_DIR: values["var_dir"], CHECKOUT: str(REPO_ROOT)}  # fmt: skip
    pattern = "|".join(re.escape(k) for k in sorted(pairs, key=len, reverse=True))
    script = re.sub(pattern, lambda m: pairs[m[0]], script)
    return re.sub(rf"(?<=[ :]){PORT}\b", values["port"], script)


def clean_env(**more: str) -> dict[str, str]:
    """A shell on the new machine: none of this process's JIESU_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIESU_")}
    env.update(more)
    return env


def bash(script: str, env: dict[str, str], cwd: Path) -> str:
    """Run `script` as a newcomer would paste it (stopping at the first failure); every process
    it starts is ended with it."""
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=300)
    finally:
        with suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"the doc's commands failed (exit {proc.returncode}):\n{output}"
    return output


def free_port(offset: int) -> str:
    for candidate in range(21000 + (os.getpid() * 7 + offset) % 10000, 32000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return str(candidate)
    raise AssertionError("no free port in 21000–31999")


def test_the_doc_has_every_block_the_procedure_needs_and_names_what_to_replace() -> None:
    found = blocks()
    expected = {"backup", "restore-install", "restore-pg-create", "restore-env-sqlite",
                "restore-env-postgresql", "restore", "restore-check", "restore-start"}  # fmt: skip
    assert expected <= set(found), f"missing blocks: {expected - set(found)}"
    install = found["restore-install"]
    assert "apt-get install" in install and "python3-venv" in install
    assert "pip install -c constraints.txt" in install and "postgresql-client" in install
    said = " ".join(DOC.read_text().split())
    for placeholder in (CHECKOUT, VAR_DIR, ARCHIVE, PG_URL, f"port `{PORT}`"):
        assert placeholder in said, f"the doc does not tell the newcomer to replace {placeholder}"
    assert DOC_MONTH in found["restore-check"] and MONTH == DOC_MONTH


@pytest.fixture
def new_pg(backend: str, pg: PgDatabases | None) -> Iterator[str | None]:
    """The fresh machine's empty database (what {#restore-pg-create} makes)."""
    if backend == "sqlite":
        yield None
        return
    assert pg is not None
    name = f"test_restore_docs_{os.getpid()}"
    pg.drop(name)
    with pg.admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg.url(name)
    finally:
        pg.drop(name)


def test_a_newcomer_restores_on_a_fresh_machine_from_the_doc_alone(
    backend: str,
    db: Database,
    new_pg: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_pg_tools(backend)
    if shutil.which("curl") is None:  # the doc's step 1 installs it; the check block uses it
        message = "curl not found (apt-get install curl): the doc's readiness check needs it"
        if IN_CI:
            pytest.fail(f"{message}; CI=true makes the restore procedure mandatory", pytrace=False)
        pytest.skip(message)
    found = blocks()
    # The old machine: a month of history, its files, a rating link already sent.
    generate(db, days=6, per_day=20, now=HISTORY_END, pack_dir=TINY_PACK, seed=29)
    tickets, events, three = rows(db, Ticket.__table__), rows(db, Event.__table__), figures(db)
    old_var = tmp_path / "old" / "var"
    files = put_files(old_var)
    monkeypatch.delenv("JIESU_SECRET_KEY", raising=False)
    use_var_dir(monkeypatch, old_var)
    token = links.sign(tickets[-1][0], now=HISTORY_END)
    old_env = clean_env(JIESU_DATABASE_URL=db.url, JIESU_VAR_DIR=str(old_var))
    backups = tmp_path / "backups"
    values = {"backups": str(backups), "var_dir": str(tmp_path / "new" / "var"),
              "url": new_pg or "", "port": free_port(1 if new_pg else 0)}  # fmt: skip
    bash(replaced(found["backup"], archive="-", **values), old_env, tmp_path)
    made = sorted(backups.glob("jiesu-*.backup"))
    assert len(made) == 1, made
    ranking = [line for line in bash(f"cd {REPO_ROOT}\n.venv/bin/jiesu metrics show --period "
                                     f"{DOC_MONTH} --group district", old_env, tmp_path)
               .splitlines() if line.strip()]  # fmt: skip
    assert len(ranking) > 3

    # The new machine: the doc's blocks in order, in a shell without the old settings.
    script = "\n".join(found[name] for name in
                       (f"restore-env-{backend}", "restore", "restore-check"))  # fmt: skip
    said = bash(replaced(script, archive=str(made[0]), **values), clean_env(), tmp_path)
    flat = " ".join(said.split())
    assert "校验通过 / verified" in flat and "恢复完成 / restored" in flat
    assert f"工单 tickets: {len(tickets):,}" in flat and f"事件 events: {len(events):,}" in flat
    assert f"{len(files) + 1} written, 0 already there" in flat
    assert '"status":"ready"' in flat
    lines = [line for line in said.splitlines() if line.strip()]
    start = lines.index(ranking[0])
    assert lines[start : start + len(ranking)] == ranking  # the old machine's figures

    new_var = Path(values["var_dir"])
    restored = Database(new_pg or f"sqlite:///{new_var / 'jiesu.sqlite3'}")
    try:
        assert rows(restored, Ticket.__table__) == tickets
        assert rows(restored, Event.__table__) == events
        assert figures(restored) == three
    finally:
        restored.dispose()
    for rel, data in files.items():
        assert (new_var / rel).read_bytes() == data
    use_var_dir(monkeypatch, new_var)
    try:
        assert links.verify(token, now=HISTORY_END) == tickets[-1][0]
    finally:
        get_settings.cache_clear()
