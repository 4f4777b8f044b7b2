"""The data a report is rendered from: frozen, plain values, no database or web imports.

Whoever builds a report (the queries) fills a `ReportData`; `jiesu.reports.render` turns it into
HTML, PDF and Excel. Rates are fractions 0–1 (a `Figure` with unit "%" likewise); the composite
score (综合得分) is the weighted sum of the 三率, also 0–1, and is shown as points out of 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

KINDS = ("daily", "weekly", "monthly")
GROUPS = ("district", "street", "department", "company")


@dataclass(frozen=True)
class Figure:
    """One headline figure: ("受理量", 70213, "件"); unit "%" means a fraction shown as 98.76%."""

    label: str
    value: float | int | None
    unit: str = ""


@dataclass(frozen=True)
class RankRow:
    """One unit in a ranking; `change` > 0 means it moved up; small samples are listed unranked."""

    rank: int | None
    code: str
    name: str
    orders: int
    response: float | None
    resolution: float | None
    satisfaction: float | None
    composite: float | None
    previous_rank: int | None = None
    change: int | None = None
    task_force: bool = False  # bottom of the list: handed to a special task force (专班)
    small_sample: bool = False  # too few orders to rank (rank is None)


@dataclass(frozen=True)
class Ranking:
    """The ranking of one group of units (district | street | department | company)."""

    group: str
    title: str
    rows: tuple[RankRow, ...]


@dataclass(frozen=True)
class CountRow:
    """A counted item: share of the total and change against the previous period as fractions."""

    name: str
    count: int
    share: float | None = None
    change: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Series:
    """A named run of counts, e.g. daily requests this period or 去年同期."""

    name: str
    points: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class WarningRow:
    """An early warning (预警) raised in the period."""

    kind: str
    title: str
    explanation: str
    orders: int


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows; sections with no data are left out of every format."""

    kind: str  # daily | weekly | monthly
    period: str  # "2026-11-03" | "2026-W45" | "2026-10"
    title: str
    city: str
    start: date  # inclusive, city-local
    end: date  # inclusive, city-local
    generated_at: datetime
    summary: tuple[Figure, ...]
    rankings: tuple[Ranking, ...] = ()
    by_category: tuple[CountRow, ...] = ()  # 高频问题
    by_channel: tuple[CountRow, ...] = ()
    by_type: tuple[CountRow, ...] = ()
    hotspots: tuple[CountRow, ...] = ()  # "朝阳区·三里屯街道"
    keywords: tuple[CountRow, ...] = ()
    trend: tuple[Series, ...] = ()  # this period first, then e.g. 去年同期
    themes: tuple[CountRow, ...] = ()  # 每月一题 candidates
    seven_haves: tuple[CountRow, ...] = ()  # 七有
    five_qualities: tuple[CountRow, ...] = ()  # 五性
    warnings: tuple[WarningRow, ...] = ()
    notes: tuple[str, ...] = ()
    district: str = ""  # a district's own report (its streets, its figures); "" for the city's
    # 知识库与直接答复 (monthly, the city's): the rates and the base's state, the entries used
    # most for direct answers, and the consultation themes the base does not answer yet.
    knowledge: tuple[Figure, ...] = ()
    knowledge_entries: tuple[CountRow, ...] = ()
    knowledge_themes: tuple[CountRow, ...] = ()
