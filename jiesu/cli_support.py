"""What every sub-command of `jiesu` shares: the database the deployment names, the consoles.

The root command (`jiesu/cli.py`) imports the packages' sub-commands (`intel/cli.py`,
`reports/cli.py`, …) to register them; a sub-command never imports the root, it takes what it
shares from here (docs/architecture.md, import rules)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from jiesu.db.engine import Database

out = Console()
err = Console(stderr=True)


def database() -> Database:
    """The deployment's database (JIESU_DATABASE_URL); the engine is imported when asked for,
    so `jiesu --help` stays quick."""
    from jiesu.db.engine import from_settings

    return from_settings()
