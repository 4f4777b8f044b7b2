"""Charts as SVG text (matplotlib, Agg, OO API): bars of counts, trend lines, ranking bars.

Text stays text (`svg.fonttype: none`), so the PDF embeds the CJK font and the chart is vector;
the font is the reports' own (`reports.fonts`, installed with jiesu), registered with matplotlib
so the labels are measured with the font they are printed in.
Output is deterministic (fixed hash salt, no date metadata, ids prefixed per chart so that several
charts can sit inline in one page). matplotlib's rcParams are global: each chart is drawn inside
`rc_context` under one lock, so nothing leaks and threads do not see each other's settings.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from jiesu.reports import fonts
from jiesu.reports.shapes import CountRow, Ranking, RankRow, Series

FONT = fonts.FAMILY
WIDTH_IN = 6.6  # A4 less the page margins
BLUE, RED, GREY = "#2f6db5", "#c8372d", "#8c8c8c"
RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "jiesu-reports",
    "svg.id": None,
    "font.family": "sans-serif",
    "font.sans-serif": [FONT, "DejaVu Sans"],
    "font.size": 8.5,
    "axes.unicode_minus": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#999999",
    "axes.titlesize": 10,
}
RANKING_CHART_MAX = 30  # more ranked units than this: chart the first and last 15 only
_LOCK = threading.Lock()
_ID = re.compile(r'\bid="([^"]+)"')
_STYLE = re.compile(r' style="([^"]*)"')


def _attributes(match: re.Match[str]) -> str:
    """style="fill: #fff; stroke-width: 0.8" → fill="#fff" stroke-width="0.8".

    Presentation attributes instead of inline styles: an HTML engine styling the page (WeasyPrint)
    would otherwise read each SVG style as page CSS and warn about every SVG-only property.
    """
    pairs = (item.split(":", 1) for item in match.group(1).split(";") if ":" in item)
    return "".join(f' {key.strip()}="{value.strip()}"' for key, value in pairs)


def _svg(fig: Figure, ident: str) -> str:
    """Serialise a figure to an inline-ready <svg> element with ids unique to `ident`."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    text = _STYLE.sub(_attributes, text)
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", ident) + "-"
    ids = sorted(set(_ID.findall(text)), key=len, reverse=True)
    for old in ids:
        text = text.replace(f'id="{old}"', f'id="{prefix}{old}"')
        text = text.replace(f"#{old})", f"#{prefix}{old})").replace(f'#{old}"', f'#{prefix}{old}"')
    return text.strip()


def _figure(height_in: float) -> Figure:
    fonts.register_matplotlib()
    return Figure(figsize=(WIDTH_IN, height_in), layout="constrained")


def count_bars(rows: Sequence[CountRow], ident: str, title: str = "", limit: int = 15) -> str:
    """Vertical bars of the first `limit` counts (the rows arrive sorted by the caller)."""
    shown = list(rows[:limit])
    with _LOCK, matplotlib.rc_context(RC):
        fig = _figure(2.8)
        ax = fig.add_subplot()
        xs = range(len(shown))
        bars = ax.bar(xs, [r.count for r in shown], color=BLUE, width=0.65)
        ax.bar_label(bars, labels=[f"{r.count:,}" for r in shown], fontsize=7, padding=1)
        ax.set_xticks(list(xs), [r.name for r in shown], parse_math=False)
        if any(len(r.name) > 4 for r in shown) and len(shown) > 6:
            for label in ax.get_xticklabels():
                label.set_rotation(35)
                label.set_horizontalalignment("right")
        ax.set_ylabel("件数")
        ax.margins(y=0.12)
        if title:
            ax.set_title(title, parse_math=False)
        return _svg(fig, ident)


def trend_lines(series: Sequence[Series], ident: str, title: str = "") -> str:
    """One line per series on shared date labels; the first solid, the rest (去年同期) dashed."""
    labels: list[str] = []
    for s in series:
        labels.extend(label for label, _ in s.points if label not in labels)
    where = {label: i for i, label in enumerate(labels)}
    with _LOCK, matplotlib.rc_context(RC):
        fig = _figure(2.6)
        ax = fig.add_subplot()
        for i, s in enumerate(series):
            xs = [where[label] for label, _ in s.points]
            ys = [count for _, count in s.points]
            colour, dash = (BLUE, "-") if i == 0 else (GREY, "--")
            ax.plot(xs, ys, color=colour, linestyle=dash, marker="o", markersize=2.5, label=s.name)
        step = max(1, -(-len(labels) // 16))
        ticks = list(range(0, len(labels), step))
        ax.set_xticks(ticks, [labels[i] for i in ticks], parse_math=False)
        ax.set_ylabel("件数")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        if len(series) > 1:
            ax.legend(frameon=False, loc="lower right")
        if title:
            ax.set_title(title, parse_math=False)
        return _svg(fig, ident)


def _ranking_rows(ranking: Ranking) -> tuple[list[RankRow], bool]:
    ranked = [r for r in ranking.rows if r.rank is not None and r.composite is not None]
    ranked.sort(key=lambda r: r.rank or 0)
    if len(ranked) <= RANKING_CHART_MAX:
        return ranked, False
    half = RANKING_CHART_MAX // 2
    return ranked[:half] + ranked[-half:], True


def ranking_bars(ranking: Ranking, ident: str) -> str:
    """Horizontal bars of the composite score (out of 100); 专班 units in red; first at the top."""
    rows, cut = _ranking_rows(ranking)
    height = 0.8 + 0.2 * max(len(rows), 3)
    with _LOCK, matplotlib.rc_context(RC):
        fig = _figure(height)
        ax = fig.add_subplot()
        ys = range(len(rows))
        scores = [(r.composite or 0.0) * 100 for r in rows]
        colours = [RED if r.task_force else BLUE for r in rows]
        bars = ax.barh(list(ys), scores, color=colours, height=0.7)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in scores], fontsize=7, padding=2)
        names = [f"{r.rank}. {r.name}" for r in rows]
        ax.set_yticks(list(ys), names, parse_math=False)
        ax.invert_yaxis()
        low = min(scores, default=0.0)
        ax.set_xlim(max(0.0, (low // 10) * 10 - 10), 104)
        ax.set_xlabel("综合得分")
        title = f"{ranking.title} · 综合得分" + ("(前15名与后15名)" if cut else "")
        ax.set_title(title, parse_math=False)
        return _svg(fig, ident)
