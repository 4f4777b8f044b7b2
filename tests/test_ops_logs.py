"""Logs (jiesu/ops/logs.py, middleware.py): JSON lines with the request id, text for people, and
never a phone number, a name, a body or a query string."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from conftest import auth
from fastapi.testclient import TestClient

from jiesu.db.engine import Database
from jiesu.ops.logs import (
    REQUEST_ID,
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    log_format,
    logging_config,
)
from jiesu.web.app import create_app

PHONE, NAME = "13912345678", "欧阳明月"
CONTENT = "楼下餐馆油烟直排扰民已经两个月了"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged at INFO and above, formatted as `jiesu serve` writes it (JSON lines)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root, client = logging.getLogger(), logging.getLogger("httpx2")  # the test's own client
    levels = root.level, client.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    client.setLevel(logging.WARNING)  # as ops.logs.logging_config sets it
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        client.setLevel(levels[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("jiesu.test", logging.INFO, __file__, 1, "hello %s", ("工单",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_json_line_has_time_level_logger_message_pid_request_id_and_extras() -> None:
    token = REQUEST_ID.set("req-1")
    try:
        record = _record(route="/livez", status=200)
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello 工单" and line["level"] == "INFO"
    assert line["logger"] == "jiesu.test" and isinstance(line["pid"], int)
    assert line["request_id"] == "req-1" and line["route"] == "/livez" and line["status"] == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))
    # Off a request: no request id at all.
    bare = _record()
    RequestIdFilter().filter(bare)
    assert "request_id" not in json.loads(JsonFormatter().format(bare))


def test_the_text_format_is_one_readable_line_with_the_same_fields() -> None:
    token = REQUEST_ID.set("req-2")
    try:
        record = _record(route="/livez")
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    text = TextFormatter().format(record)
    assert re.search(r"INFO \[\d+\] jiesu\.test: hello 工单 request_id=req-2 route=/livez$", text)


def test_the_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert log_format("") == "json" and log_format("TEXT") == "text"
    with pytest.raises(ValueError, match="JIESU_LOG_FORMAT"):
        log_format("xml")
    assert logging_config("json")["loggers"]["jiesu.access"]["level"] == "INFO"
    monkeypatch.setenv("JIESU_ACCESS_LOG", "off")
    assert logging_config("json")["loggers"]["jiesu.access"]["level"] == "WARNING"


def test_the_request_id_is_taken_when_well_formed_else_made(client: TestClient) -> None:
    assert (
        client.get("/livez", headers={"X-Request-ID": "lb-7f3a.2_x"}).headers["x-request-id"]
        == "lb-7f3a.2_x"
    )
    for bad in ("has space", "x" * 65, "引号".encode(), "a/b", ""):
        made = client.get("/livez", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made), bad
    first = client.get("/livez").headers["x-request-id"]
    assert first != client.get("/livez").headers["x-request-id"]


def test_lines_logged_during_a_request_carry_its_id_threads_included(
    db: Database, captured: io.StringIO
) -> None:
    app = create_app(db)

    @app.get("/_test/log")
    def logs_something() -> dict[str, str]:  # a sync endpoint: runs in the thread pool
        logging.getLogger("jiesu.test").info("inside the request")
        return {}

    with TestClient(app) as c:
        assert c.get("/_test/log", headers={"X-Request-ID": "trace-42"}).status_code == 200
    found = lines(captured)
    inside = [x for x in found if x["message"] == "inside the request"]
    assert [x["request_id"] for x in inside] == ["trace-42"]
    (access,) = [x for x in found if x["logger"] == "jiesu.access"]
    assert access["request_id"] == "trace-42" and access["route"] == "/_test/log"
    assert access["method"] == "GET" and access["status"] == 200
    assert isinstance(access["duration_ms"], float) and isinstance(access["pid"], int)


def test_no_phone_name_body_or_query_string_reaches_the_logs(
    client: TestClient, captured: io.StringIO
) -> None:
    agent, centre = auth(client, "agent1"), auth(client, "dispatcher1")
    body = {"channel": "phone", "content": CONTENT, "requester": {"name": NAME, "phone": PHONE}}
    r = client.post("/api/v1/tickets", json=body, headers={**agent, "X-Request-ID": "intake-1"})
    assert r.status_code == 201, r.text
    found = client.get(f"/api/v1/tickets?phone={PHONE}&text={NAME}", headers=centre)
    assert found.status_code == 200, found.text
    bad = {**body, "channel": "carrier-pigeon"}  # refused: its body must not be echoed either
    assert client.post("/api/v1/tickets", json=bad, headers=agent).status_code == 422
    client.get(f"/no/such/{PHONE}")
    logged = captured.getvalue()
    records = lines(captured)
    access = [x for x in records if x["logger"] == "jiesu.access"]
    assert len(access) >= 5 and any(x["request_id"] == "intake-1" for x in access)
    assert {x["route"] for x in access} >= {"/api/v1/tickets", "unmatched"}
    for secret in (PHONE, PHONE[-4:] + '"', NAME, CONTENT, "phone=", "text="):
        assert secret not in logged, secret
    assert not [x for x in access if "?" in str(x.get("path", ""))]
