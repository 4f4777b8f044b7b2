"""The logs of every jiesu process: one configuration for `serve` (uvicorn's loggers included),
`worker` and the CLI.

JSON lines by default (`JIESU_LOG_FORMAT=json`), one object a line, for a log collector (Loki,
Elasticsearch, the journal): `time` (UTC, ISO 8601), `level`, `logger`, `message`, `pid`, and
while a request runs its `request_id` (the contextvar the middleware sets), plus the fields a
line was logged with (`extra=`: the access line's `method`, `route`, `path`, `status`,
`duration_ms`, `client`). `JIESU_LOG_FORMAT=text` writes the same for people.

What a line never holds: a query string, a request body, a phone number, a name. The access
line names the path (ticket ids, never a search) and the route template; the code logs ids and
counts, not people. tests/test_ops_logs.py drives an intake with a name and a phone and a
search by phone, and finds neither in what was logged.
"""

from __future__ import annotations

import logging
import logging.config
import os
import time
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

FORMATS = ("json", "text")
REQUEST_ID: ContextVar[str | None] = ContextVar("jiesu_request_id", default=None)

# The attributes every LogRecord has: what is left over was passed with `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's coloured copy of the message
    "taskName",
}


def log_format(value: str | None = None) -> str:
    """JIESU_LOG_FORMAT (json by default); anything else is refused, so a typo is not silent."""
    raw = (value if value is not None else os.environ.get("JIESU_LOG_FORMAT", "")).strip().lower()
    if not raw:
        return "json"
    if raw not in FORMATS:
        raise ValueError(
            f"JIESU_LOG_FORMAT 须为 json 或 text / JIESU_LOG_FORMAT must be json or text: {raw!r}"
        )
    return raw


def access_log() -> bool:
    """JIESU_ACCESS_LOG: the middleware's access line, on unless `off` (or 0, false, no)."""
    raw = os.environ.get("JIESU_ACCESS_LOG", "").strip().lower()
    return raw not in ("off", "0", "false", "no")


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the request under way (None off a request).
    On the handler, so that records propagated from any logger get it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time, level, logger, message, pid, request_id, the extras."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("json_ensure_ascii", False)  # Chinese messages stay readable
        super().__init__(*args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = _utc(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.getMessage()
        log_data["pid"] = record.process
        request_id = getattr(record, "request_id", None)
        if request_id:
            log_data["request_id"] = request_id
        log_data.update(_extras(record))
        log_data.update(message_dict)  # exc_info / stack_info when present


class TextFormatter(logging.Formatter):
    """For people: `time LEVEL [pid] logger: message key=value …` (request id and extras)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _extras(record)
        request_id = getattr(record, "request_id", None)
        if request_id:
            fields = {"request_id": request_id, **fields}
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} {tail}{newline}{rest}"


def _utc(created: float) -> str:
    seconds = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(created % 1 * 1000):03d}Z"


def logging_config(fmt: str | None = None, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for any jiesu process (uvicorn takes it as `log_config`):
    one handler on stderr, the chosen format, uvicorn's loggers through it. uvicorn's own
    access line is not used (it carries the query string): the middleware writes one."""
    chosen = log_format(fmt)
    formatter = (
        "jiesu.ops.logs.JsonFormatter" if chosen == "json" else "jiesu.ops.logs.TextFormatter"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "jiesu.ops.logs.RequestIdFilter"}},
        "formatters": {"jiesu": {"()": formatter}},
        "handlers": {
            "jiesu": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "jiesu",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["jiesu"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"level": "WARNING"},
            "sqlalchemy": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            "httpx2": {"level": "WARNING"},
            # JIESU_ACCESS_LOG=off: no access line (nginx writes its own; ~17 µs a request
            # on the 2-core bench machine), everything else as before.
            "jiesu.access": {"level": level if access_log() else "WARNING"},
        },
    }


def configure(fmt: str | None = None, level: str = "INFO") -> None:
    """Apply the configuration to this process (the worker, the CLI)."""
    logging.config.dictConfig(logging_config(fmt, level))
    logging.captureWarnings(True)
