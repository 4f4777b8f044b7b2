"""Process settings, read once from the environment.

Everything a *city* would change lives in its city pack (see docs/citypack.md); this module only
holds what an operator sets per deployment: where the database is, where files go, how to serve.
"""

from __future__ import annotations

import ipaddress
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
    # The reverse proxies whose X-Forwarded-For / X-Forwarded-Proto `jiesu serve` believes
    # (addresses or networks). Empty: the headers are ignored and the client is the peer.
    trusted_proxies: tuple[str, ...] = ()
    # The portal's submission budget against floods of anonymous requests: at most this many
    # submissions per client address, and in all, per window; past either, 429 in Chinese.
    portal_submits_per_address: int = 20
    portal_submits_total: int = 300
    portal_submit_window_minutes: int = 10
    # Who may scrape GET /metrics (addresses or networks, JIESU_METRICS_ALLOW); anyone else
    # gets a 404, as for a path that does not exist. Loopback by default.
    metrics_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    # The logs' format (JIESU_LOG_FORMAT): JSON lines for a collector, or text for people.
    log_format: str = "json"
    # A streaming read replica for the analysis reads (JIESU_ANALYSIS_DATABASE_URL: dashboards,
    # rankings, reports, exports; `jiesu.db.replica`) and how far behind it may be, in seconds,
    # before those reads go back to the primary (JIESU_ANALYSIS_MAX_LAG). None: the primary.
    analysis_url: str | None = None
    analysis_max_lag_s: float = 60.0


def parse_trusted_proxies(value: str) -> tuple[str, ...]:
    """JIESU_TRUSTED_PROXIES: comma-separated addresses or CIDR networks, e.g.
    `127.0.0.1, 10.0.0.0/8`. Each is checked, so a typo cannot silently trust nobody (or all)."""
    return parse_networks(value, "JIESU_TRUSTED_PROXIES")


def parse_networks(value: str, name: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks from the setting `name`, each checked."""
    proxies = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(
                f"{name} 中的 {item!r} 不是 IP 地址或网段 / {item!r} in "
                f"{name} is not an IP address or network"
            ) from None
        proxies.append(str(network.network_address) if "/" not in item else str(network))
    return tuple(proxies)


def _positive(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} 须为正整数 / {name} must be a whole number of at least 1")
    return int(raw)


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
        trusted_proxies=parse_trusted_proxies(os.environ.get("JIESU_TRUSTED_PROXIES", "")),
        portal_submits_per_address=_positive("JIESU_PORTAL_SUBMITS_PER_ADDRESS", 20),
        portal_submits_total=_positive("JIESU_PORTAL_SUBMITS_TOTAL", 300),
        portal_submit_window_minutes=_positive("JIESU_PORTAL_SUBMIT_WINDOW_MINUTES", 10),
        metrics_allow=parse_networks(
            os.environ.get("JIESU_METRICS_ALLOW", "127.0.0.1,::1"), "JIESU_METRICS_ALLOW"
        ),
        log_format=_log_format(),
        analysis_url=os.environ.get("JIESU_ANALYSIS_DATABASE_URL", "").strip() or None,
        analysis_max_lag_s=float(_positive("JIESU_ANALYSIS_MAX_LAG", 60)),
    )


def _log_format() -> str:
    from jiesu.ops.logs import log_format

    return log_format()


@lru_cache(maxsize=1)
def city_tz() -> ZoneInfo:
    """The city's zone (Asia/Shanghai for Beijing): times are stored in UTC and shown in this."""
    return ZoneInfo(get_settings().timezone)
