"""The reports' font: Noto Sans CJK SC, installed with jiesu (`noto-cjk-sans-otc`), never the
system's. WeasyPrint gets it by an `@font-face` whose `file://` URL is the one URL the PDF's
fetcher allows; matplotlib registers the same file, so charts and text share one font; the
glyph check reads the same face's cmap. A machine without any CJK font therefore prints the
same PDF as one with them, and `missing()` says which characters no report may contain.

`FONT_ID` (family and version) is written into each stored report's HTML
(`<meta name="jiesu-font">`): a report stored under another font (or none, before this check)
is rebuilt when it is opened (`reports.build.current`).
"""

from __future__ import annotations

import threading
import unicodedata
from functools import cache
from pathlib import Path

from noto_cjk_sans_otc import FONT_PATH

FAMILY = "Noto Sans CJK SC"  # the face of the collection the reports use (simplified Chinese)
FACE_INDEX = 2  # its index in NotoSansCJK-Regular.ttc (JP, KR, SC, TC, HK, then the Mono ones)
_LOCK = threading.Lock()
_registered = False


def font_path() -> Path:
    """The bundled .ttc (an installed package file: always on disk)."""
    return Path(str(FONT_PATH)).resolve()


def font_url() -> str:
    return font_path().as_uri()


@cache
def _face() -> tuple[str, frozenset[int]]:
    """(family + version, code points with a glyph) of the SC face, read once per process."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(font_path()), fontNumber=FACE_INDEX, lazy=True)
    try:
        family = font["name"].getDebugName(1) or FAMILY
        version = (font["name"].getDebugName(5) or "").split(";")[0].replace("Version ", "")
        cmap = frozenset(font.getBestCmap())
    finally:
        font.close()
    return f"{family} {version}".strip(), cmap


def font_id() -> str:
    """What a report records it was rendered with: "Noto Sans CJK SC 2.004"."""
    return _face()[0]


def font_face_css() -> str:
    """The `@font-face` rule a report's <style> starts with (the PDF fetches this file only)."""
    return f'@font-face {{ font-family: "{FAMILY}"; src: url("{font_url()}"); }}'


def _ignorable(char: str) -> bool:
    """Characters that are not drawn: line breaks, tabs, controls, format marks."""
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def missing(texts: str | list[str] | tuple[str, ...]) -> list[str]:
    """The distinct characters of `texts` the report font has no glyph for, in order of first
    appearance ([] when all can be drawn)."""
    cmap = _face()[1]
    seen: dict[str, None] = {}
    for text in [texts] if isinstance(texts, str) else texts:
        for char in text:
            if char not in seen and ord(char) not in cmap and not _ignorable(char):
                seen[char] = None
    return list(seen)


def register_matplotlib() -> None:
    """Make the bundled font known to matplotlib (once per process; the charts name FAMILY)."""
    global _registered
    if _registered:
        return
    with _LOCK:
        if not _registered:
            from matplotlib import font_manager

            font_manager.fontManager.addfont(str(font_path()))
            _registered = True


__all__ = ["FAMILY", "font_face_css", "font_id", "font_path", "font_url", "missing",
           "register_matplotlib"]  # fmt: skip
