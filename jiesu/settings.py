"""Process settings, read once from the environment.

Everything a *city* would change lives in its city pack (see docs/citypack.md); this module only
holds what an operator sets per deployment: where the database is, where files go, how to serve.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    database_url: str
    var_dir: Path
    timezone: str
    token_ttl_hours: int
    # District/street boundary polygons (GeoJSON) for coordinates → place; the city's own file,
    # not shipped in the pack when its licence forbids it. None: points resolve to nothing.
    boundaries: Path | None = None


def default_database_url(var_dir: Path) -> str:
    return f"sqlite:///{var_dir / 'jiesu.sqlite3'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    var_dir = Path(os.environ.get("JIESU_VAR_DIR", REPO_ROOT / "var"))
    return Settings(
        database_url=os.environ.get("JIESU_DATABASE_URL") or default_database_url(var_dir),
        var_dir=var_dir,
        timezone=os.environ.get("JIESU_TIMEZONE", "Asia/Shanghai"),
        token_ttl_hours=int(os.environ.get("JIESU_TOKEN_TTL_HOURS", "12")),
        boundaries=Path(b) if (b := os.environ.get("JIESU_BOUNDARIES")) else None,
    )


@lru_cache(maxsize=1)
def city_tz() -> ZoneInfo:
    """The city's zone (Asia/Shanghai for Beijing): times are stored in UTC and shown in this."""
    return ZoneInfo(get_settings().timezone)
