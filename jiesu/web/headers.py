"""Security headers on every response: the content security policy and its companions.

`SecurityHeaders` is a pure ASGI middleware (the outermost one, so the input guard's 413/422
answers carry the headers too). It adds, unless the response set its own:

- `Content-Security-Policy`: scripts only from the app's own files (no inline script, no
  event-handler attributes, no `javascript:` links, no eval), nothing framed, no plugins, forms
  and fetches to the app only. Style *attributes* are allowed ('unsafe-inline' in
  `style-src`, which is also the fallback of `style-src-attr`): ECharts sets style attributes
  itself (with `style-src 'self'` alone, the dashboard reports style-src-attr violations from
  echarts.min.js), and the templates still carry layout in `style="…"`. `<style>` elements stay
  refused (`style-src-elem 'self'`). A style attribute cannot run script, and what users type
  is escaped before it reaches one. A page that needs more (the API docs' init script, a stored
  report's own `<style>`) sets its own policy with `policy(...)`.
- `X-Frame-Options: DENY` (old browsers' `frame-ancestors 'none'`), `X-Content-Type-Options:
  nosniff`, `Referrer-Policy: same-origin` (ticket ids and searches never leave in a Referer),
  `Cross-Origin-Opener-Policy: same-origin`, a `Permissions-Policy` (the portal may locate the
  citizen; nothing may use camera or microphone).
- `Strict-Transport-Security` when the request's scheme is https: served over TLS, or behind a
  proxy in `JIESU_TRUSTED_PROXIES` whose `X-Forwarded-Proto` uvicorn has applied (`serving.py`);
  a client's own `X-Forwarded-Proto` counts for nothing.
- `Cache-Control: no-store` on everything but the static files: the API, the console and the
  portal carry personal data, and no shared cache or back button should keep it. A route that
  sets its own keeps it (a ticket's photos and the map outlines: private, an hour).
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_PREFIX = "/static/"
HSTS = "max-age=31536000; includeSubDomains"


def policy(*, script_src: str = "'self'", style_src_elem: str = "'self'") -> str:
    """The content security policy; a page that needs more passes its own script or `<style>`
    sources (e.g. `"'self' 'sha256-…'"`)."""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {script_src}",
            "style-src 'self' 'unsafe-inline'",
            f"style-src-elem {style_src_elem}",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


CSP = policy()
# A stored report is a whole HTML document with its own <style> and inline SVG; it runs nothing.
REPORT_CSP = policy(script_src="'none'", style_src_elem="'self' 'unsafe-inline'")

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def script_hashes(html: str) -> list[str]:
    """The CSP sources that allow exactly the inline scripts of `html` (`'sha256-…'`)."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html)
    ]


BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(self)"),
)


class SecurityHeaders:
    """Adds the headers above to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(BASE_HEADERS)
        if not str(scope.get("path", "")).startswith(STATIC_PREFIX):
            extra.append((b"cache-control", b"no-store"))
        if scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", HSTS.encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in extra if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
