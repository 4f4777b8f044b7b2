"""Every response carries the security headers (web/headers.py), and no page needs inline script.

The kinds of response: API JSON, API errors (401, 404, 422, the input guard's 413 and NUL 422),
console pages (signed in and not), portal pages, console and portal error pages, static files,
/healthz, the API docs. Static files may be cached; nothing else may be stored. HSTS only over
HTTPS. The templates and the app's own scripts are checked for what the policy would refuse:
inline <script>, on…= handlers, javascript: links.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from conftest import auth
from fastapi.testclient import TestClient
from test_auth import Console, app_of

from jiesu.assessment.models import Report
from jiesu.db.engine import Database
from jiesu.web.headers import CSP, REPORT_CSP, script_hashes

ROOT = Path(__file__).resolve().parent.parent
COMMON = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _directives(csp: str) -> dict[str, str]:
    return {d.strip().split(" ", 1)[0]: d.strip().partition(" ")[2] for d in csp.split(";")}


def _secured(r: httpx.Response, *, cached: bool = False) -> None:
    for name, value in COMMON.items():
        assert r.headers.get(name) == value, (r.request.url, name, r.headers.get(name))
    csp = _directives(r.headers["content-security-policy"])
    assert csp["frame-ancestors"] == "'none'"
    assert csp["script-src"].split()[0] == "'self'"
    assert "'unsafe-inline'" not in csp["script-src"]
    assert "'unsafe-eval'" not in csp["script-src"]
    assert csp["object-src"] == "'none'"
    assert "strict-transport-security" not in r.headers  # plain HTTP
    if cached:
        assert "no-store" not in r.headers.get("cache-control", "")
    else:
        assert r.headers.get("cache-control") == "no-store", (r.request.url, r.headers)


def test_the_policy_allows_only_the_apps_own_scripts() -> None:
    csp = _directives(CSP)
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"
    assert csp["style-src-elem"] == "'self'"  # no <style> elements; style attributes allowed
    assert csp["connect-src"] == "'self'"
    assert csp["form-action"] == "'self'"
    assert _directives(REPORT_CSP)["script-src"] == "'none'"


def test_api_answers_carry_the_headers(client: TestClient) -> None:
    headers = auth(client, "agent1")
    _secured(client.get("/api/v1/categories", headers=headers))
    _secured(client.get("/api/v1/tickets"))  # 401
    _secured(client.get("/api/v1/tickets/999999", headers=headers))  # 404
    _secured(client.post("/api/v1/tickets", json={"channel": "nope"}, headers=headers))  # 422
    _secured(client.get("/api/v1/no-such-thing"))  # routing 404
    _secured(client.get("/api/v1/openapi.json"))
    _secured(client.get("/healthz"))


def test_the_input_guards_answers_carry_the_headers(client: TestClient) -> None:
    headers = auth(client, "agent1")
    big = client.post("/api/v1/tickets", content=b"x" * (300 * 1024), headers=headers)
    assert big.status_code == 413
    _secured(big)
    nul = client.get("/api/v1/tickets?text=%00", headers=headers)
    assert nul.status_code == 422
    _secured(nul)


def test_pages_carry_the_headers(client: TestClient) -> None:
    app = app_of(client)
    _secured(client.get("/login"))
    _secured(client.get("/portal"))
    _secured(client.get("/portal/submit"))
    _secured(client.get("/portal/no-such-page"))  # the portal's error page
    _secured(client.get("/console", follow_redirects=False))  # the redirect to sign in
    agent = Console(app, "agent1")
    for path in ("/console/intake", "/console/tickets", "/console/no-such-page"):
        r = agent.get(path)
        assert r.headers["content-type"].startswith("text/html"), path
        _secured(r)


def test_a_stored_report_has_its_own_policy_styles_but_no_script(
    client: TestClient, db: Database
) -> None:
    with db.write() as s:
        report = Report(kind="daily", period="2026-11-30", title="日报",
                        html="<!doctype html><style>h1{color:red}</style><h1>日报</h1>",
                        pdf=b"", xlsx=b"")  # fmt: skip
        s.add(report)
        s.flush()
        report_id = report.id
    r = Console(app_of(client), "supervisor1").get(f"/console/reports/{report_id}")
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-security-policy"] == REPORT_CSP
    assert _directives(REPORT_CSP)["style-src-elem"] == "'self' 'unsafe-inline'"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-frame-options"] == "DENY"


def test_static_files_carry_the_headers_and_may_be_cached(client: TestClient) -> None:
    for path in ("/static/app.js", "/static/app.css", "/static/vendor/htmx-2.0.8.min.js"):
        r = client.get(path)
        assert r.status_code == 200, path
        _secured(r, cached=True)
    _secured(client.get("/static/no-such-file.js"), cached=True)


def test_hsts_only_over_https(client: TestClient) -> None:
    assert "strict-transport-security" not in client.get("/healthz").headers
    app = app_of(client)
    with TestClient(app, base_url="https://testserver") as https:
        hsts = https.get("/healthz").headers["strict-transport-security"]
    assert hsts.startswith("max-age=31536000")
    # a client's own claim is not a proxy's (uvicorn applies trusted proxies' to the scheme)
    spoofed = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in spoofed.headers


def test_the_api_docs_come_from_the_app_with_only_their_own_inline_script(
    client: TestClient,
) -> None:
    r = client.get("/api/docs")
    assert r.status_code == 200
    _secured(r)
    sources = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert sources and all(s.startswith("/static/vendor/swagger-ui/") for s in sources), sources
    for source in sources:
        assert client.get(source).status_code == 200, source
    allowed = _directives(r.headers["content-security-policy"])["script-src"].split()
    hashes = script_hashes(r.text)
    assert len(hashes) == 1  # FastAPI's setup of SwaggerUIBundle, allowed by its hash alone
    assert allowed == ["'self'", *hashes]
    assert "/api/v1/openapi.json" in r.text


def test_script_hashes_are_the_base64_sha256_of_each_inline_script() -> None:
    # echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
    html = "<p><script>alert(1)</script><script src='/x.js'></script>"
    assert script_hashes(html) == ["'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"]


# ---- what the policy would refuse, kept out of the source ------------------------------------

TEMPLATES = sorted(ROOT.glob("jiesu/**/templates/**/*.html"))
SCRIPTS = sorted(p for p in ROOT.glob("jiesu/web/static/*.js"))
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
JS_URL = re.compile(r"javascript:", re.IGNORECASE)


def test_the_templates_exist() -> None:
    assert len(TEMPLATES) > 20 and SCRIPTS


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_template_has_inline_script_or_handlers(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not INLINE_SCRIPT.search(text), "inline <script>: move it to jiesu/web/static/*.js"
    assert not HANDLER.search(text), "an on…= handler: bind it in jiesu/web/static/*.js"
    assert not JS_URL.search(text), "a javascript: link: use data-back or a real address"


def test_no_html_written_in_python_has_a_javascript_link() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.glob("jiesu/**/*.py")
        if p.name != "headers.py" and JS_URL.search(p.read_text(encoding="utf-8"))
    ]  # headers.py: its docstring names what the policy refuses
    assert not offenders


# Markup built from strings: the app's scripts never do it (tooltips escape in dashboard.js).
UNSAFE_JS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_the_apps_scripts_build_no_markup_from_strings(path: Path) -> None:
    assert not UNSAFE_JS.findall(path.read_text(encoding="utf-8"))
