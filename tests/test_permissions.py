"""The permission matrix: every route names one permission, every role gets the answer the table
in `access/permissions.py` gives it, ids of other units' tickets cannot be probed, and the
requester's name and phone stay masked everywhere but in the (logged) reveal.

The table EXPECTED below names every route of the app with its permission: a new route that is
not added to it fails `test_the_app_has_exactly_the_routes_of_the_table`, and a route without a
permission fails `test_every_route_but_the_public_ones_names_exactly_one_permission`.

The matrix runs on `gate`: one tiny city per backend (module scope) with three tickets led by
东一街道 (S11), two of them co-handled by 东二街道 (S12), one of those with a confidential
requester, and a photo on two of them. Nothing here changes a ticket: every write that is tried
must be refused, and the tests check that it was.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import BACKENDS, Templates, auth, tiny_city
from fastapi import FastAPI, routing
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_auth import Console, app_of, is_html

from jiesu.access.permissions import HOME, PERMISSIONS, ROLES
from jiesu.assessment.models import Report, Warning
from jiesu.auth.models import ApiToken, AuditLog
from jiesu.auth.passwords import hash_password
from jiesu.auth.service import principal_of
from jiesu.console import views as console_views
from jiesu.console.admin_views import SECTIONS
from jiesu.console.service import queues
from jiesu.db.engine import Database
from jiesu.org.models import Unit, User
from jiesu.taxonomy.models import CalendarOverride
from jiesu.tickets.models import Attachment, Event, Ticket
from jiesu.web.app import create_app

TICKETS = "/api/v1/tickets"

# ---- the table ---------------------------------------------------------------------------------

# Every route of the app and the one permission it names. Adding a route means adding it here.
EXPECTED: dict[tuple[str, str], str] = {
    # API: auth and system tokens
    ("POST", "/api/v1/auth/logout"): "signed_in",
    ("POST", "/api/v1/auth/password"): "signed_in",
    ("POST", "/api/v1/admin/tokens"): "admin",
    ("GET", "/api/v1/admin/tokens"): "admin",
    ("DELETE", "/api/v1/admin/tokens/{token_id}"): "admin",
    # API: webhook subscribers and the delivery log
    ("GET", "/api/v1/admin/webhooks"): "admin",
    ("POST", "/api/v1/admin/webhooks"): "admin",
    ("GET", "/api/v1/admin/deliveries"): "admin",
    ("POST", "/api/v1/admin/deliveries/{delivery_id}/redeliver"): "admin",
    # API: org and taxonomy
    ("GET", "/api/v1/units"): "signed_in",
    ("GET", "/api/v1/categories"): "signed_in",
    # API: tickets
    ("POST", "/api/v1/tickets"): "tickets.intake",
    ("GET", "/api/v1/tickets"): "tickets.read",
    ("GET", "/api/v1/tickets/{ticket_id}"): "tickets.read",
    ("POST", "/api/v1/tickets/{ticket_id}/actions/{action}"): "tickets.act",
    ("POST", "/api/v1/tickets/{ticket_id}/reveal"): "tickets.reveal",
    # console
    ("GET", "/console"): "signed_in",
    ("GET", "/console/account/password"): "signed_in",
    ("POST", "/console/account/password"): "signed_in",
    ("GET", "/console/tickets"): "tickets.read",
    # Console: assessment, warnings and proactive tasks, reports
    ("GET", "/api/v1/metrics/units"): "assessment.view",
    ("GET", "/api/v1/metrics/units/{code}/orders"): "assessment.view",
    ("GET", "/api/v1/warnings"): "warnings.view",
    ("GET", "/console/assessment"): "assessment.view",
    ("GET", "/console/assessment/drill"): "assessment.view",
    ("GET", "/console/warnings"): "warnings.view",
    ("GET", "/console/warnings/{warning_id}"): "warnings.view",
    ("POST", "/console/warnings/{warning_id}/task"): "warnings.handle",
    ("POST", "/console/warnings/{warning_id}/dismiss"): "warnings.handle",
    ("POST", "/console/warnings/scan"): "warnings.handle",
    ("POST", "/console/tickets/{ticket_id}/links"): "warnings.handle",
    ("GET", "/console/reports"): "reports.view",
    ("POST", "/console/reports"): "reports.build",
    ("GET", "/console/reports/{report_id}"): "reports.view",
    ("GET", "/console/reports/{report_id}/pdf"): "reports.view",
    ("GET", "/console/reports/{report_id}/xlsx"): "reports.view",
    ("GET", "/console/dispatch"): "workbench.dispatch",
    ("GET", "/console/inbox"): "workbench.unit",
    ("GET", "/console/callbacks"): "workbench.callback",
    # 短信回访: the SMS gateway's replies, the callback workbench's own tabs
    ("POST", "/api/v1/sms/inbound"): "sms.inbound",
    ("GET", "/console/callbacks/calls"): "workbench.callback",
    ("GET", "/console/callbacks/rated"): "workbench.callback",
    ("GET", "/console/callbacks/replies"): "workbench.callback",
    ("POST", "/console/callbacks/replies/{reply_id}/link"): "workbench.callback",
    ("POST", "/console/callbacks/replies/{reply_id}/handled"): "workbench.callback",
    ("GET", "/console/supervision"): "workbench.supervision",
    ("GET", "/console/tickets/{ticket_id}"): "tickets.read",
    ("POST", "/console/tickets/{ticket_id}/actions/{action}"): "tickets.act",
    ("POST", "/console/tickets/{ticket_id}/reveal"): "tickets.reveal",
    ("GET", "/console/attachments/{attachment_id}"): "tickets.read",
    ("GET", "/console/intake"): "workbench.intake",
    ("GET", "/console/intake/history"): "workbench.intake",
    ("POST", "/console/intake/suggest"): "workbench.intake",
    ("POST", "/console/intake"): "workbench.intake",
    # the knowledge base on the call (jiesu/knowledge/call_views.py): the intake's panel, 报错
    ("POST", "/console/intake/knowledge"): "workbench.intake",
    ("POST", "/console/knowledge/{code}/flags"): "knowledge.flag",
    # the knowledge base's pages (jiesu/knowledge/pages.py): list, entry, drafts, review, XLSX
    ("GET", "/console/knowledge"): "knowledge.read",
    ("GET", "/console/knowledge/export.xlsx"): "knowledge.read",
    ("GET", "/console/knowledge/{code}"): "knowledge.read",
    ("GET", "/console/knowledge/new"): "knowledge.edit",
    ("POST", "/console/knowledge/new"): "knowledge.edit",
    ("GET", "/console/knowledge/mine"): "knowledge.edit",
    ("GET", "/console/knowledge/{code}/edit"): "knowledge.edit",
    ("POST", "/console/knowledge/{code}/edit"): "knowledge.edit",
    ("POST", "/console/knowledge/{code}/submit"): "knowledge.edit",
    ("POST", "/console/knowledge/{code}/recall"): "knowledge.edit",
    ("POST", "/console/knowledge/{code}/discard"): "knowledge.edit",
    ("POST", "/console/knowledge/flags/{flag_id}/resolve"): "knowledge.edit",
    ("GET", "/console/knowledge/review"): "knowledge.review",
    ("POST", "/console/knowledge/{code}/publish"): "knowledge.review",
    ("POST", "/console/knowledge/{code}/return"): "knowledge.review",
    ("POST", "/console/knowledge/{code}/withdraw"): "knowledge.review",
    ("GET", "/console/knowledge/import"): "knowledge.import",
    ("POST", "/console/knowledge/import"): "knowledge.import",
    ("POST", "/console/knowledge/import/commit"): "knowledge.import",
    # the base learns (jiesu/knowledge/learn_views.py): suggested entries, drafted or dismissed
    ("GET", "/console/knowledge/suggestions"): "knowledge.suggestions",
    ("POST", "/console/knowledge/suggestions/{suggestion_id}/draft"): "knowledge.suggestions",
    ("POST", "/console/knowledge/suggestions/{suggestion_id}/dismiss"): "knowledge.suggestions",
    # the knowledge base's API (jiesu/knowledge/views.py): search, entries, workflow, flags
    ("GET", "/api/v1/knowledge/search"): "knowledge.read",
    ("GET", "/api/v1/knowledge/entries"): "knowledge.read",
    ("GET", "/api/v1/knowledge/entries/{code}"): "knowledge.read",
    ("GET", "/api/v1/knowledge/entries/{code}/versions"): "knowledge.read",
    ("GET", "/api/v1/knowledge/flags"): "knowledge.read",
    ("POST", "/api/v1/knowledge/entries"): "knowledge.edit",
    ("PUT", "/api/v1/knowledge/entries/{code}/draft"): "knowledge.edit",
    ("POST", "/api/v1/knowledge/entries/{code}/submit"): "knowledge.edit",
    ("POST", "/api/v1/knowledge/entries/{code}/recall"): "knowledge.edit",
    ("POST", "/api/v1/knowledge/entries/{code}/discard"): "knowledge.edit",
    ("POST", "/api/v1/knowledge/entries/{code}/publish"): "knowledge.review",
    ("POST", "/api/v1/knowledge/entries/{code}/return"): "knowledge.review",
    ("POST", "/api/v1/knowledge/entries/{code}/withdraw"): "knowledge.review",
    ("POST", "/api/v1/knowledge/entries/{code}/flags"): "knowledge.flag",
    ("POST", "/api/v1/knowledge/flags/{flag_id}/resolve"): "knowledge.edit",
    ("GET", "/console/lookup/units"): "tickets.act",
    ("GET", "/console/lookup/categories"): "tickets.act",
    # the call centre: the telephony's API and the agent's pop (Server-Sent Events)
    ("POST", "/api/v1/calls"): "calls.telephony",
    ("POST", "/api/v1/calls/{call_id}/recording"): "calls.telephony",
    ("POST", "/api/v1/calls/{call_id}/end"): "calls.telephony",
    ("GET", "/console/calls/events"): "workbench.intake",
    # console: the dashboard (数据大屏)
    ("GET", "/console/dashboard"): "dashboard.view",
    ("GET", "/console/dashboard/data"): "dashboard.view",
    ("GET", "/console/dashboard/boundaries.json"): "dashboard.view",
    # console: administration
    ("GET", "/console/admin"): "admin",
    ("GET", "/console/admin/{section}"): "admin",
    ("GET", "/console/admin/webhooks"): "admin",  # 推送订阅 (jiesu/delivery/views.py)
    ("POST", "/console/admin/webhooks"): "admin",
    ("POST", "/console/admin/webhooks/{subscriber_id}"): "admin",
    ("POST", "/console/admin/webhooks/{subscriber_id}/rotate"): "admin",
    ("POST", "/console/admin/webhooks/{subscriber_id}/test"): "admin",
    ("POST", "/console/admin/webhooks/{subscriber_id}/redeliver"): "admin",
    ("GET", "/console/admin/deliveries"): "admin",  # 投递记录
    ("POST", "/console/admin/deliveries/{delivery_id}/redeliver"): "admin",
    ("POST", "/console/admin/users"): "admin",
    ("POST", "/console/admin/users/{user_id}"): "admin",
    ("POST", "/console/admin/units"): "admin",
    ("POST", "/console/admin/units/{unit_id}"): "admin",
    ("POST", "/console/admin/calendar"): "admin",
    ("POST", "/console/admin/tokens"): "admin",
    ("POST", "/console/admin/tokens/{token_id}/revoke"): "admin",
    ("POST", "/console/admin/models/{model_id}/activate"): "admin",
    ("POST", "/console/admin/intel"): "admin",
    ("POST", "/console/admin/catalogue"): "admin",
    ("POST", "/console/admin/catalogue/{rule_id}"): "admin",
    ("POST", "/console/admin/categories"): "admin",
    ("POST", "/console/admin/categories/{category_id}"): "admin",
    ("POST", "/console/admin/weights"): "admin",
    ("GET", "/console/admin/pack/download"): "admin",
    ("GET", "/console/admin/open311"): "admin",
    ("POST", "/console/admin/open311"): "admin",
    ("POST", "/console/admin/open311/{key_id}/revoke"): "admin",
    # 系统管理 → 通知设置 (jiesu/notices/views.py): SMS opt-outs, units' notice e-mails
    ("GET", "/console/admin/notices"): "admin",
    ("POST", "/console/admin/notices/opt-outs"): "admin",
    ("POST", "/console/admin/notices/opt-outs/{opt_out_id}/undo"): "admin",
    ("POST", "/console/admin/notices/emails"): "admin",
    ("POST", "/console/admin/notices/emails/{email_id}/delete"): "admin",
    # exports (jiesu/exports): every list as CSV / XLSX, under the list's own permission
    ("GET", "/console/exports/tickets.csv"): "tickets.read",
    ("GET", "/console/exports/rankings.csv"): "assessment.view",
    ("GET", "/console/exports/warnings.csv"): "warnings.view",
    ("GET", "/api/v1/exports/tickets.csv"): "tickets.read",
    ("GET", "/api/v1/exports/rankings.csv"): "assessment.view",
    ("GET", "/api/v1/exports/warnings.csv"): "warnings.view",
    ("GET", "/console/exports/tickets.xlsx"): "tickets.read",
    ("GET", "/console/exports/rankings.xlsx"): "assessment.view",
    ("GET", "/console/exports/warnings.xlsx"): "warnings.view",
    ("GET", "/api/v1/exports/tickets.xlsx"): "tickets.read",
    ("GET", "/api/v1/exports/rankings.xlsx"): "assessment.view",
    ("GET", "/api/v1/exports/warnings.xlsx"): "warnings.view",
    ("GET", "/console/exports/deliveries.csv"): "admin",
    ("GET", "/console/exports/deliveries.xlsx"): "admin",
    # console: a unit admin's own people
    ("GET", "/console/unit/users"): "unit.users",
    ("POST", "/console/unit/users"): "unit.users",
    ("POST", "/console/unit/users/{user_id}"): "unit.users",
}

# Routes anyone may call: signing in and out, health, the home redirect, the API docs.
PUBLIC: set[tuple[str, str]] = {
    ("POST", "/api/v1/auth/token"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/livez"),  # the process answers (jiesu/ops/health.py)
    ("GET", "/readyz"),  # the database answers at the code's schema
    ("GET", "/metrics"),  # Prometheus: by peer address (JIESU_METRICS_ALLOW), not by sign-in
    ("GET", "/api/docs"),  # Swagger UI from the app's own files (web/app.py)
    ("GET", "/favicon.ico"),  # the tab icon (web/static/favicon.ico)
    ("GET", "/r/{token}"),  # the rating link of the 回访邀请 SMS: on to /portal/link/{token}
}
# The citizens' portal: no staff sign-in at all (a citizen holds a tracking code).
PUBLIC_PREFIX = "/portal"
# Open311 GeoReport v2: public reading, creating by a civic app's api_key (no staff sign-in).
OPEN311_PREFIX = "/open311/v2/"
# Routes that are not APIRoutes: the OpenAPI schema, the static files.
PUBLIC_OTHER = {"/api/v1/openapi.json", "/static"}

# A user of each role, all of them in the service centre or in 东一街道 (S11).
ROLE_USER = {
    "agent": "agent1",
    "dispatcher": "dispatcher1",
    "handler": "s11.handler",
    "unit_admin": "s11.admin",
    "callback_agent": "callback1",
    "supervisor": "supervisor1",
    "analyst": "analyst1",
    "admin": "admin1",
}
REDIRECTS = {"/console", "/console/admin"}  # pages that answer 303 to the role's own page

OPEN_PERSON = ("张三丰", "13800138000")  # not confidential
SECRET_PERSON = ("李四光", "13900139000")  # confidential
OTHER_PERSON = ("王五六", "13700137000")
MASKED_OPEN = ("张**", "138****8000")


# ---- walking the app -----------------------------------------------------------------------


def _route_contexts(app: FastAPI) -> Iterator[Any]:
    """Every route, flattened: FastAPI ≥ 0.16x keeps included routers as `_IncludedRouter`."""
    walker = getattr(routing, "iter_route_contexts", None)
    if walker is None:  # older FastAPI: app.routes is already flat
        yield from app.routes
        return
    yield from walker(app.routes)


def _original(route: Any) -> Any:
    return getattr(route, "original_route", route)


def _permissions(dependant: Any) -> list[str]:
    """The `.permission` of every dependency in the tree (see web/deps.require)."""
    found = []
    call = getattr(dependant, "call", None)
    if call is not None and hasattr(call, "permission"):
        found.append(call.permission)
    for sub in dependant.dependencies:
        found.extend(_permissions(sub))
    return found


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    permissions: tuple[str, ...]


def api_routes(app: FastAPI) -> tuple[list[RouteInfo], list[str]]:
    """(every method and path of an APIRoute with its permissions, the paths of other routes)."""
    infos, others = [], []
    for route in _route_contexts(app):
        original = _original(route)
        if not isinstance(original, APIRoute):
            others.append(str(getattr(route, "path", None) or getattr(original, "path", "")))
            continue
        dependant = getattr(route, "dependant", None) or original.dependant
        perms = tuple(_permissions(dependant))
        path = getattr(route, "path", None) or original.path
        for method in sorted(original.methods or ()):
            infos.append(RouteInfo(method, path, perms))
    return infos, others


def is_public(method: str, path: str) -> bool:
    return (
        (method, path) in PUBLIC
        or path == PUBLIC_PREFIX
        or path.startswith((PUBLIC_PREFIX + "/", OPEN311_PREFIX))
    )


@pytest.fixture(scope="module")
def bare_app() -> FastAPI:
    return create_app(Database("sqlite://"))


def test_every_route_but_the_public_ones_names_exactly_one_permission(bare_app: FastAPI) -> None:
    infos, _ = api_routes(bare_app)
    assert len(infos) > 40
    wrong = [
        f"{r.method} {r.path}: {list(r.permissions) or 'no permission'}"
        for r in infos
        if not is_public(r.method, r.path) and len(r.permissions) != 1
    ]
    assert not wrong, "routes without exactly one permission:\n" + "\n".join(wrong)
    public_with = [
        f"{r.method} {r.path}" for r in infos if is_public(r.method, r.path) and r.permissions
    ]
    assert not public_with, f"public routes that name a permission: {public_with}"


def test_the_app_has_exactly_the_routes_of_the_table(bare_app: FastAPI) -> None:
    infos, others = api_routes(bare_app)
    actual = {
        (r.method, r.path): r.permissions[0]
        for r in infos
        if not is_public(r.method, r.path) and r.permissions
    }
    missing = sorted(set(EXPECTED) - set(actual))
    unexpected = sorted(f"{m} {p} ({actual[m, p]})" for m, p in set(actual) - set(EXPECTED))
    assert not unexpected, f"routes not in EXPECTED (add them with their permission): {unexpected}"
    assert not missing, f"routes in EXPECTED that the app does not have: {missing}"
    differ = {k: (EXPECTED[k], v) for k, v in actual.items() if EXPECTED[k] != v}
    assert not differ, f"(expected, actual) permission differs: {differ}"
    assert sorted(set(others) - PUBLIC_OTHER) == [], "routes that are neither APIRoutes nor known"
    public_seen = {(r.method, r.path) for r in infos if (r.method, r.path) in PUBLIC}
    assert public_seen == PUBLIC


def test_the_table_names_only_known_permissions_and_uses_them_all() -> None:
    assert set(EXPECTED.values()) <= set(PERMISSIONS)
    assert set(EXPECTED.values()) == set(PERMISSIONS), "a permission no route uses"
    for permission, roles in PERMISSIONS.items():
        assert roles <= set(ROLES), permission
    assert set(ROLE_USER) == set(ROLES)


def route_of(method: str, url: str) -> tuple[str, str]:
    """The EXPECTED route a concrete URL lands on (a fixed path wins over a parameter)."""
    path = url.split("?", 1)[0]
    if (method, path) in EXPECTED:
        return method, path
    for m, template in EXPECTED:
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        if m == method and re.fullmatch(pattern, path):
            return m, template
    raise AssertionError(f"no route for {method} {url}")


@pytest.mark.parametrize("role", ROLES)
def test_every_roles_home_page_is_one_it_may_open(role: str) -> None:
    assert role in PERMISSIONS[EXPECTED[route_of("GET", HOME[role])]]


# ---- the city ------------------------------------------------------------------------------


@dataclass
class Gate:
    client: TestClient
    db: Database
    tickets: dict[str, int]
    photos: dict[str, int]
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    browsers: dict[str, Console] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)  # a warning and a report to open

    @property
    def app(self) -> FastAPI:
        return app_of(self.client)

    def api(self, username: str) -> dict[str, str]:
        if username not in self.headers:
            self.headers[username] = auth(self.client, username)
        return self.headers[username]

    def console(self, username: str) -> Console:
        if username not in self.browsers:
            self.browsers[username] = Console(self.app, username)
        return self.browsers[username]

    def fill(self, path: str) -> str:
        """A concrete URL for a route: a ticket every role sees, an action, a photo of it."""
        return (
            path.replace("{ticket_id}", str(self.tickets["open"]))
            .replace("{action}", "accept")
            .replace("{attachment_id}", str(self.photos["open"]))
            .replace("{section}", "users")
            .replace("{token_id}", "999999")
            .replace("{user_id}", "999999")
            .replace("{key_id}", "999999")
            .replace("{unit_id}", "999999")
            .replace("{warning_id}", str(self.extra["warning"]))
            .replace("{report_id}", str(self.extra["report"]))
            .replace("{code}", "S11")
            .replace("{reply_id}", "999999")
            .replace("{subscriber_id}", "999999")
            .replace("{delivery_id}", "999999")
            .replace("{call_id}", "no-such-call")
            .replace("{opt_out_id}", "999999")
            .replace("{email_id}", "999999")
            .replace("{flag_id}", "999999")
            .replace("{suggestion_id}", "999999")
        )

    def knowledge_entry(self) -> str:
        """The code of a published knowledge entry owned by 东一街道 (S11), made on first use:
        every role reads it, S11's staff and the centre edit it."""
        code = "KB-GATE-1"
        if "knowledge" not in self.extra:
            from jiesu.knowledge.service import EntryContent, publish_direct

            with self.db.write() as s:
                admin = s.execute(
                    select(User, Unit).join(Unit, Unit.id == User.unit_id)
                    .where(User.username == "admin1")
                ).one()  # fmt: skip
                s11 = s.scalar(select(Unit.id).where(Unit.code == "S11"))
                assert s11 is not None
                content = EntryContent(
                    title="暖气不热找谁报修", answer="供暖期内室温低于十八摄氏度的，可拨打供热单位的"
                    "服务电话报修，供热单位应在二十四小时内上门查看。", category_code=None,
                    owner_unit_id=s11, keywords=["暖气"], questions=["暖气不热怎么办"],
                    valid_from=None, valid_to=None, source=None, link=None, change_note=None,
                )  # fmt: skip
                entry = publish_direct(content, actor=principal_of(*admin), db_session=s,
                                       now=datetime(2026, 11, 3, 2, tzinfo=UTC), code=code)  # fmt: skip
                self.extra["knowledge"] = entry.id
        return code

    def fingerprint(self) -> dict[str, Any]:
        """What a refused write must leave as it was."""
        with self.db.read() as s:
            count = lambda model: s.scalar(select(func.count()).select_from(model))  # noqa: E731
            return {
                "tickets": sorted(
                    s.execute(select(Ticket.id, Ticket.status, Ticket.version)).all()
                ),
                "events": count(Event),
                "users": sorted(s.execute(select(User.username, User.active, User.role)).all()),
                "units": sorted(s.execute(select(Unit.code, Unit.name, Unit.active)).all()),
                "calendar": count(CalendarOverride),
                "system_tokens": s.scalar(
                    select(func.count()).select_from(ApiToken).where(ApiToken.kind == "system")
                ),
                "revoked": s.scalar(
                    select(func.count())
                    .select_from(ApiToken)
                    .where(ApiToken.revoked_at.is_not(None))
                ),
            }

    def reveals(self, ticket: str, username: str) -> int:
        with self.db.read() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(AuditLog)
                    .where(
                        AuditLog.action == "reveal",
                        AuditLog.ticket_id == self.tickets[ticket],
                        AuditLog.username == username,
                    )
                )
                or 0
            )


def _create(
    client: TestClient, headers: dict[str, str], person: tuple[str, str], **more: Any
) -> int:
    name, phone = person
    body = {
        "channel": "phone",
        "content": "小区暖气不热，已经三天了",
        "requester": {"name": name, "phone": phone, **more.pop("requester", {})},
        **more,
    }
    r = client.post(TICKETS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _photo(db: Database, ticket_id: int, folder: Path, content: bytes) -> int:
    digest = hashlib.sha256(content).hexdigest()
    (folder / digest).write_bytes(content)
    with db.write() as s:
        row = Attachment(
            ticket_id=ticket_id,
            filename="photo.jpg",
            content_type="image/jpeg",
            size=len(content),
            sha256=digest,
        )
        s.add(row)
        s.flush()
        return row.id


@pytest.fixture(scope="module", params=BACKENDS)
def gate(
    request: pytest.FixtureRequest,
    templates: Templates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gate]:
    uploads = tmp_path_factory.mktemp("uploads")
    patch = pytest.MonkeyPatch()
    patch.setattr(console_views, "upload_path", lambda sha256: uploads / sha256)
    try:
        with tiny_city(str(request.param), templates, tmp_path_factory) as (client, db):
            agent = auth(client, "agent1")
            tickets = {
                "open": _create(client, agent, OPEN_PERSON),
                "secret": _create(
                    client,
                    agent,
                    SECRET_PERSON,
                    request_type="report",
                    requester={"confidential": True},
                ),
                "s11only": _create(client, agent, OTHER_PERSON),
            }
            dispatcher = auth(client, "dispatcher1")
            for name, co in (("open", ["S12"]), ("secret", ["S12"]), ("s11only", [])):
                r = client.post(
                    f"{TICKETS}/{tickets[name]}/actions/dispatch",
                    json={"lead": "S11", "co_handlers": co},
                    headers=dispatcher,
                )
                assert r.status_code == 200, r.text
            photos = {
                "open": _photo(db, tickets["open"], uploads, b"\xff\xd8open-photo"),
                "s11only": _photo(db, tickets["s11only"], uploads, b"\xff\xd8s11-photo"),
            }
            with db.write() as s:  # a district handler above S11
                d1 = s.scalar(select(Unit.id).where(Unit.code == "D1"))
                assert d1 is not None
                s.add(
                    User(
                        username="d1.handler",
                        name="东区承办人",
                        role="handler",
                        unit_id=d1,
                        password_hash=hash_password("secret123"),
                    )
                )
            with db.write() as s:  # a warning and a stored report to open
                warning = Warning(kind="repeat", key="gate", day=date(2026, 11, 3),
                                  title="同一来电人30天内3次诉求", explanation="见依据工单",
                                  evidence=[tickets["open"]], status="open")  # fmt: skip
                report = Report(kind="daily", period="2026-11-03", title="日通报",
                                html="<p>日通报</p>", pdf=b"%PDF-", xlsx=b"PK")  # fmt: skip
                s.add_all([warning, report])
                s.flush()
                extra = {"warning": warning.id, "report": report.id}
            yield Gate(client, db, tickets, photos, {"agent1": agent, "dispatcher1": dispatcher},
                       extra=extra)  # fmt: skip
    finally:
        patch.undo()


# ---- what each role may open ---------------------------------------------------------------

GET_ROUTES = sorted(p for m, p in EXPECTED if m == "GET")
WRITE_ROUTES = sorted((m, p) for m, p in EXPECTED if m != "GET")


def get_urls(gate: Gate, path: str) -> list[str]:
    if path == "/console/admin/{section}":
        # a section with a route of its own (e.g. open311) is checked under that route
        return [f"/console/admin/{key}" for key, _ in SECTIONS
                if ("GET", f"/console/admin/{key}") not in EXPECTED]  # fmt: skip
    if path == "/console/intake/history":
        return [path, f"{path}?phone={OPEN_PERSON[1]}"]
    if path == "/console/assessment/drill":
        return [f"{path}?unit=S11&what=counted"]
    if path == "/console/calls/events":  # the stream answers what is pending and ends
        return [f"{path}?wait=0"]
    if "/knowledge/" in path and "{code}" in path:  # a published entry of 东一街道 (S11)
        return [gate.fill(path.replace("{code}", gate.knowledge_entry()))]
    return [gate.fill(path)]


def test_the_matrix_opens_every_get_route_by_a_url_of_its_own(gate: Gate) -> None:
    for path in GET_ROUTES:
        urls = get_urls(gate, path)
        assert urls, path
        assert {route_of("GET", url) for url in urls} == {("GET", path)}, urls


@pytest.mark.parametrize("path", GET_ROUTES)
def test_each_role_gets_a_page_or_a_403_as_the_table_says(gate: Gate, path: str) -> None:
    permission = EXPECTED["GET", path]
    wrong = []
    for role, username in ROLE_USER.items():
        allowed = role in PERMISSIONS[permission]
        for url in get_urls(gate, path):
            if url.startswith("/api/"):
                r = gate.client.get(url, headers=gate.api(username))
            else:
                r = gate.console(username).get(url)
            expected = (303 if path in REDIRECTS else 200) if allowed else 403
            problem = None
            if r.status_code != expected:
                problem = f"status {r.status_code}"
            elif not allowed and url.startswith("/api/"):
                if r.json().get("error") != "forbidden":
                    problem = f"not a JSON 403: {r.text[:100]}"
            elif not allowed:
                if not is_html(r) or "没有权限" not in r.text:
                    problem = f"not an HTML 403 page: {r.headers.get('content-type')}"
            elif path == "/console" and r.headers["location"] != HOME[role]:
                problem = f"redirects to {r.headers['location']}"
            if problem:
                wrong.append(f"{role} GET {url}: expected {expected}, {problem}")
    assert not wrong, "\n".join(wrong)


def _write(gate: Gate, username: str, method: str, url: str) -> httpx.Response:
    if url.startswith("/api/"):
        kwargs: dict[str, Any] = {"headers": gate.api(username)}
        if method != "DELETE":
            kwargs["json"] = {}
        return gate.client.request(method, url, **kwargs)
    return gate.console(username).post(url, {})


DENIED_WRITES = [
    (m, p, role)
    for m, p in WRITE_ROUTES
    for role in ROLES
    if role not in PERMISSIONS[EXPECTED[m, p]]
]


@pytest.mark.parametrize(
    ("method", "path"),
    sorted({(m, p) for m, p, _ in DENIED_WRITES}),
)
def test_a_role_without_the_permission_cannot_write_and_nothing_changes(
    gate: Gate, method: str, path: str
) -> None:
    url = gate.fill(path)
    before = gate.fingerprint()
    wrong = []
    for m, p, role in DENIED_WRITES:
        if (m, p) != (method, path):
            continue
        r = _write(gate, ROLE_USER[role], method, url)
        if r.status_code != 403:
            wrong.append(f"{role}: {r.status_code} {r.text[:120]}")
        elif url.startswith("/api/") and r.json().get("error") != "forbidden":
            wrong.append(f"{role}: not a JSON 403")
        elif not url.startswith("/api/") and not is_html(r):
            wrong.append(f"{role}: not an HTML 403")
    assert not wrong, f"{method} {url}:\n" + "\n".join(wrong)
    assert gate.fingerprint() == before


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_without_signing_in_the_api_says_401_and_the_console_says_sign_in(
    gate: Gate, method: str, path: str
) -> None:
    url = gate.fill(path)
    anonymous = TestClient(gate.app, raise_server_exceptions=False, follow_redirects=False)
    before = gate.fingerprint()
    r = anonymous.request(method, url, **({"json": {}} if url.startswith("/api/") else {}))
    if url.startswith("/api/"):
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "unauthorized"
        assert r.headers["WWW-Authenticate"] == "Bearer"
    else:
        assert r.status_code == 303, r.text[:300]
        if method == "GET":  # back to the page after signing in
            assert r.headers["location"] == "/login?next=" + quote(url)
        else:
            assert r.headers["location"].startswith("/login")
    assert gate.fingerprint() == before


# ---- ids cannot be probed ------------------------------------------------------------------

NO_SUCH_ID = 987654321

PROBES = [
    pytest.param("GET", "/api/v1/tickets/{id}", id="api_detail"),
    pytest.param("POST", "/api/v1/tickets/{id}/actions/accept", id="api_accept"),
    pytest.param("POST", "/api/v1/tickets/{id}/reveal", id="api_reveal"),
    pytest.param("GET", "/console/tickets/{id}", id="console_ticket"),
    pytest.param("POST", "/console/tickets/{id}/actions/accept", id="console_accept"),
    pytest.param("POST", "/console/tickets/{id}/reveal", id="console_reveal"),
    pytest.param("GET", "/console/attachments/{photo}", id="console_attachment"),
]


def _probe(gate: Gate, username: str, method: str, template: str, ticket: int, photo: int) -> Any:
    url = template.replace("{id}", str(ticket)).replace("{photo}", str(photo))
    if url.startswith("/api/"):
        r = gate.client.request(
            method, url, headers=gate.api(username), **({"json": {}} if method == "POST" else {})
        )
    elif method == "POST":
        r = gate.console(username).post(url, {})
    else:
        r = gate.console(username).get(url)
    return r


def _same_shape(text: str, *ids: int) -> str:
    for i in ids:
        text = re.sub(rf"(?<![\w.\-/]){i}(?![\w.\-])", "ID", text)
    return text


@pytest.mark.parametrize("prober", ["s12.handler", "heat.handler"])
@pytest.mark.parametrize(("method", "template"), PROBES)
def test_another_units_ticket_answers_404_not_403(
    gate: Gate, prober: str, method: str, template: str
) -> None:
    before = gate.fingerprint()
    r = _probe(gate, prober, method, template, gate.tickets["s11only"], gate.photos["s11only"])
    assert r.status_code == 404, r.text[:300]
    if template.startswith("/api/"):
        assert r.json()["error"] == "not_found"
    else:
        assert is_html(r)
        assert "photo" not in r.headers.get("content-type", "")
    assert OTHER_PERSON[0] not in r.text and OTHER_PERSON[1] not in r.text
    assert gate.fingerprint() == before


@pytest.mark.parametrize(
    ("method", "template"),
    PROBES,
)
def test_another_units_ticket_answers_like_one_that_does_not_exist(
    gate: Gate, method: str, template: str
) -> None:
    ticket, photo = gate.tickets["s11only"], gate.photos["s11only"]
    theirs = _probe(gate, "s12.handler", method, template, ticket, photo)
    nothing = _probe(gate, "s12.handler", method, template, NO_SUCH_ID, NO_SUCH_ID)
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.headers.get("content-type") == nothing.headers.get("content-type")
    assert _same_shape(theirs.text, ticket, photo) == _same_shape(nothing.text, NO_SUCH_ID)


# ---- masking ---------------------------------------------------------------------------------

LEAD = ["s11.handler", "s11.admin"]  # 东一街道 leads both tickets
NOT_LEAD = ["s12.handler", "d1.handler"]  # a co-handler, the district above
OUTSIDER = ["heat.handler"]  # sees neither
CENTRE = ["agent1", "dispatcher1", "callback1", "supervisor1", "analyst1", "admin1"]
VIEWERS = LEAD + NOT_LEAD + OUTSIDER + CENTRE

# Tried on both tickets by everyone: each must be refused (403/404/409/422) and never succeed.
ATTEMPTS: list[tuple[str, dict[str, Any]]] = [
    ("contact", {"note": "已电话联系诉求人"}),
    ("request_return", {}),
    ("audit", {"passed": True}),
    ("suspend", {}),
    ("teleport", {}),
    ("accept", {"version": 1}),
    ("reply", {"result": "solved", "content": "已经全部处理完毕了，谢谢"}),
]

EXPORTS = [
    *(f"/{where}/exports/{name}.{fmt}" for where in ("console", "api/v1")
      for name in ("tickets", "rankings", "warnings") for fmt in ("csv", "xlsx")),
    "/console/exports/deliveries.csv",
    "/console/exports/deliveries.xlsx",
    "/console/knowledge/export.xlsx",  # entries only: nothing of a requester may be in it
]  # fmt: skip
WORKBENCHES = {
    "/console/dispatch": ("workbench.dispatch", "dispatch"),
    "/console/inbox": ("workbench.unit", "inbox"),
    "/console/callbacks": ("workbench.callback", "callbacks"),
    "/console/supervision": ("workbench.supervision", "supervision"),
}


def _role(gate: Gate, username: str) -> str:
    with gate.db.read() as s:
        role = s.scalar(select(User.role).where(User.username == username))
    assert role is not None
    return role


def what_they_see(gate: Gate, username: str) -> list[tuple[str, httpx.Response]]:
    """Every page and API answer that shows the tickets to `username`, error answers included."""
    role = _role(gate, username)
    api, browser = gate.api(username), gate.console(username)
    seen = [
        ("api list", gate.client.get(TICKETS, params={"page_size": 200}, headers=api)),
        ("console list", browser.get("/console/tickets")),
        ("console search", browser.get("/console/tickets", params={"text": "暖气"})),
        *((f"export {url}", browser.get(url)) for url in EXPORTS),
        ("export search", browser.get("/console/exports/tickets.csv", params={"text": "暖气"})),
    ]
    for href, (permission, workbench) in WORKBENCHES.items():
        if role in PERMISSIONS[permission]:
            for q in queues(workbench):
                seen.append((f"{href}?tab={q.key}", browser.get(href, params={"tab": q.key})))
    if role in PERMISSIONS["workbench.intake"]:
        seen.append(("intake", browser.get("/console/intake")))
        for phone in (OPEN_PERSON[1], SECRET_PERSON[1]):
            seen.append(
                ("history", browser.get("/console/intake/history", params={"phone": phone}))
            )
    if role == "admin":
        seen.append(("audit log", browser.get("/console/admin/audit")))
    for name in ("open", "secret"):
        tid = gate.tickets[name]
        seen.append((f"api detail {name}", gate.client.get(f"{TICKETS}/{tid}", headers=api)))
        seen.append((f"console page {name}", browser.get(f"/console/tickets/{tid}")))
        for action, body in ATTEMPTS:
            url = f"{TICKETS}/{tid}/actions/{action}"
            seen.append((f"api {action} {name}", gate.client.post(url, json=body, headers=api)))
            form = {k: str(v).lower() if isinstance(v, bool) else v for k, v in body.items()}
            seen.append(
                (
                    f"console {action} {name}",
                    browser.post(f"/console/tickets/{tid}/actions/{action}", form),
                )
            )
    return seen


def _reveal(gate: Gate, username: str, ticket: str) -> tuple[httpx.Response, httpx.Response]:
    tid = gate.tickets[ticket]
    api = gate.client.post(f"{TICKETS}/{tid}/reveal", headers=gate.api(username))
    page = gate.console(username).post(f"/console/tickets/{tid}/reveal")
    return api, page


def _leaks(text: str) -> list[str]:
    return [v for v in (*OPEN_PERSON, *SECRET_PERSON) if v in text]


@pytest.mark.parametrize("username", VIEWERS)
def test_name_and_phone_stay_masked_in_every_answer(gate: Gate, username: str) -> None:
    before = gate.fingerprint()
    seen = what_they_see(gate, username)
    assert gate.fingerprint() == before, "an attempted action went through"
    leaks = [f"{label} ({r.status_code}): {_leaks(r.text)}" for label, r in seen if _leaks(r.text)]
    assert not leaks, "\n".join(leaks)
    attempts = [
        r.status_code
        for label, r in seen
        if label.startswith(("api ", "console ")) and label.split()[1] in dict(ATTEMPTS)
    ]
    assert all(400 <= s < 500 for s in attempts), attempts
    if username in OUTSIDER:
        assert set(attempts) == {404}
    elif username in LEAD:
        assert set(attempts) == {403, 404, 409, 422}
    elif _role(gate, username) != "analyst":
        assert {403, 409, 422} & set(attempts)


@pytest.mark.parametrize("username", LEAD + NOT_LEAD + CENTRE)
def test_reading_shows_the_masked_form(gate: Gate, username: str) -> None:
    detail = gate.client.get(f"{TICKETS}/{gate.tickets['open']}", headers=gate.api(username))
    assert detail.status_code == 200
    assert detail.json()["requester"] == {
        "name": MASKED_OPEN[0],
        "phone": MASKED_OPEN[1],
        "confidential": False,
        "masked": True,
    }
    secret = gate.client.get(f"{TICKETS}/{gate.tickets['secret']}", headers=gate.api(username))
    assert secret.json()["requester"] == {
        "name": None,
        "phone": None,
        "confidential": True,
        "masked": True,
    }
    page = gate.console(username).get(f"/console/tickets/{gate.tickets['open']}")
    assert MASKED_OPEN[0] in page.text and MASKED_OPEN[1] in page.text
    listed = gate.console(username).get("/console/tickets")
    assert MASKED_OPEN[0] in listed.text and MASKED_OPEN[1] in listed.text


@pytest.mark.parametrize("username", LEAD)
def test_the_lead_sees_the_whole_requester_only_in_the_reveal(gate: Gate, username: str) -> None:
    before = gate.reveals("open", username)
    api, page = _reveal(gate, username, "open")
    assert api.status_code == 200
    assert api.json() == {
        "name": OPEN_PERSON[0],
        "phone": OPEN_PERSON[1],
        "confidential": False,
        "masked": False,
    }
    assert page.status_code == 200
    assert OPEN_PERSON[0] in page.text and OPEN_PERSON[1] in page.text
    assert gate.reveals("open", username) == before + 2
    # a confidential requester: not even to the lead
    before = gate.reveals("secret", username)
    for r in _reveal(gate, username, "secret"):
        assert r.status_code == 403
        assert not _leaks(r.text)
    assert gate.reveals("secret", username) == before


@pytest.mark.parametrize("username", NOT_LEAD + OUTSIDER)
def test_a_unit_that_does_not_lead_cannot_reveal(gate: Gate, username: str) -> None:
    expected = 404 if username in OUTSIDER else 403
    for ticket in ("open", "secret"):
        before = gate.reveals(ticket, username)
        for r in _reveal(gate, username, ticket):
            assert r.status_code == expected
            assert not _leaks(r.text)
        assert gate.reveals(ticket, username) == before


@pytest.mark.parametrize("username", CENTRE)
def test_the_service_centre_reveals_whole_and_every_reveal_is_logged(
    gate: Gate, username: str
) -> None:
    for ticket, (name, phone), confidential in (
        ("open", OPEN_PERSON, False),
        ("secret", SECRET_PERSON, True),
    ):
        tid = gate.tickets[ticket]
        before = gate.reveals(ticket, username)
        api = gate.client.post(f"{TICKETS}/{tid}/reveal", headers=gate.api(username))
        assert api.status_code == 200
        assert api.json() == {
            "name": name,
            "phone": phone,
            "confidential": confidential,
            "masked": False,
        }
        assert gate.reveals(ticket, username) == before + 1
        page = gate.console(username).post(f"/console/tickets/{tid}/reveal")
        assert page.status_code == 200
        assert name in page.text and phone in page.text and "已记录查看" in page.text
        assert gate.reveals(ticket, username) == before + 2
    with gate.db.read() as s:
        row = s.scalars(
            select(AuditLog)
            .where(AuditLog.action == "reveal", AuditLog.username == username)
            .order_by(AuditLog.id.desc())
        ).first()
        assert row is not None
        assert row.ip == "testclient" and row.user_id is not None
        assert row.detail.get("fields") == ["name", "phone"]
        assert not _leaks(str(row.detail))  # the log says who looked, not what they saw


def test_every_export_is_in_the_masking_test(gate: Gate) -> None:
    """An export (a file of many tickets) must be among the answers the masking test reads."""
    exports = {p for m, p in EXPECTED if p.endswith((".csv", ".xlsx")) or "export" in p}
    assert exports == set(EXPORTS)


@pytest.mark.parametrize("username", LEAD + CENTRE)
def test_the_csv_export_shows_the_requester_masked(gate: Gate, username: str) -> None:
    r = gate.console(username).get("/console/exports/tickets.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    name, phone = header.index("诉求人"), header.index("电话")
    people = {(row[name], row[phone]) for row in body}
    assert MASKED_OPEN in people
    assert ("保密", "") in people  # the confidential requester: nothing but the word
    assert not _leaks(r.text)
