"""Reading a page as its user does: the visible words must be Chinese, codes only small beside a
name, and nothing a programmer left behind (None, undefined, tracebacks, raw keys).

`visible_text(page)` collects what a person can read: the text of every rendered element, the
placeholders, titles and labels of visible controls, the options of visible lists and the page
title, leaving out what is drawn small as a code (`<small>`, `.code`, `<code>`). `findings(text)`
names what does not belong there. `crawl(page, base, start)` walks the same-origin console and
portal links a user reaches from a page, breadth first, each kind of address once.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

# Latin words a Chinese government interface uses as they are.
ALLOWED_WORDS = frozenset({
    "PDF", "Excel", "API", "XLSX", "CSV", "SMS", "URL", "IP", "OK", "ID", "App", "APP", "Wi", "Fi",
    "jiesu", "TOP", "Top", "GIS", "KPI", "PM", "AM", "ETC", "Ctrl", "Enter", "Tab", "Esc", "Shift",
    "JPG", "JPEG", "PNG", "WebP", "GIF", "HEIC", "Open311", "GeoReport", "ZIP", "KTV",
})  # fmt: skip
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z_0-9]{2,}")
# Codes that mean nothing to a person when shown alone: category codes (0207, 020703), division
# and unit codes (110101, 110101001, 110101-CGW, BJ-RX), snake_case keys.
RAW_CODE = re.compile(
    r"(?<![\w\-./:*])(?:0\d{3}(?:\d{2})?|11\d{4}(?:\d{3})?(?:-[A-Z]+)?|[A-Z]{2,}-[A-Z0-9]{2,})"
    r"(?![\w\-])"
)
SNAKE_KEY = re.compile(r"\b[a-z]+_[a-z_]+\b")
LEFTOVERS = re.compile(
    r"\bNone\b|\bnull\b|\bundefined\b|\bNaN\b|Traceback|\[object |\{\{|\}\}|\{%|Internal Server"
)

VISIBLE_TEXT_JS = r"""() => {
  const skip = el => el.closest('script, style, noscript, template, small, code, .code, svg text');
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || skip(el) || !node.textContent.trim()) continue;
    if (el.closest('option')) continue;
    if (!el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
    out.push(node.textContent.trim());
  }
  for (const el of document.querySelectorAll('[placeholder], [title], [aria-label], img[alt]')) {
    if (skip(el) || !el.checkVisibility()) continue;
    for (const name of ['placeholder', 'title', 'aria-label', 'alt']) {
      const v = el.getAttribute(name);
      if (v && v.trim()) out.push(v.trim());
    }
  }
  for (const sel of document.querySelectorAll('select')) {
    if (!sel.checkVisibility()) continue;
    for (const o of sel.options) if (o.text.trim()) out.push(o.text.trim());
  }
  for (const b of document.querySelectorAll('input[type=submit], input[type=button]')) {
    if (b.checkVisibility() && b.value) out.push(b.value);
  }
  out.push(document.title);
  return out.join('\n');
}"""


def visible_text(page: Any) -> str:
    return str(page.evaluate(VISIBLE_TEXT_JS))


def findings(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """What in the visible text is not for a Chinese reader: Latin words, raw codes, leftovers."""
    ok = ALLOWED_WORDS | set(allowed)
    found: list[str] = []
    for line in text.splitlines():
        for m in LATIN_WORD.finditer(line):
            if m.group(0) not in ok:
                found.append(f"英文 {m.group(0)!r} in {line[:80]!r}")
        for m in RAW_CODE.finditer(line):
            found.append(f"编码 {m.group(0)!r} in {line[:80]!r}")
        for m in SNAKE_KEY.finditer(line):
            found.append(f"键名 {m.group(0)!r} in {line[:80]!r}")
        for m in LEFTOVERS.finditer(line):
            found.append(f"残留 {m.group(0)!r} in {line[:80]!r}")
    return found


# Addresses a crawl never follows: leaving, downloads, actions by GET, raw API answers.
NOT_PAGES = re.compile(
    r"^/(logout|api/|static/|healthz)|\.(pdf|xlsx|csv|zip|png|jpg|svg)$|/(pdf|xlsx|excel|export|"
    r"download|photos?|reveal)(/|$)"
)


def page_kind(url: str) -> str:
    """One kind per address shape: /console/tickets/123 and /console/tickets/456 are one kind;
    query values that are words (a queue, a status) make kinds, numbers and dates do not."""
    parts = urlsplit(url)
    path = re.sub(r"\d+", "N", parts.path)
    query = sorted(
        (k, "N" if re.search(r"\d", v) else v) for k, v in parse_qsl(parts.query) if k != "page"
    )
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")


def crawl(
    page: Any, base: str, start: str, *, limit: int = 30, roots: tuple[str, ...] = ("/console",)
) -> dict[str, str]:
    """Visit the pages a user reaches from `start` by following links; {url: visible text}.

    Raises AssertionError for a page that answers with an error."""
    seen: set[str] = set()
    pages: dict[str, str] = {}
    queue: deque[str] = deque([urljoin(base, start)])
    while queue and len(pages) < limit:
        url = queue.popleft()
        kind = page_kind(url)
        if kind in seen:
            continue
        seen.add(kind)
        response = page.goto(url)
        assert response is not None and response.status < 400, (
            f"{url} answered {response.status if response else 'nothing'}"
        )
        page.wait_for_load_state("networkidle")
        pages[url] = visible_text(page)
        hrefs: list[str] = page.eval_on_selector_all(
            "a[href]", "els => els.map(a => a.getAttribute('href'))"
        )
        for href in hrefs:
            target = urljoin(url, href)
            parts = urlsplit(target)
            if not target.startswith(base) or (parts.fragment and not parts.path):
                continue
            if not parts.path.startswith(roots) or NOT_PAGES.search(parts.path):
                continue
            target = target.split("#", 1)[0]
            if page_kind(target) not in seen:
                queue.append(target)
    return pages
