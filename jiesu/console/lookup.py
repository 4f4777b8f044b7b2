"""Pickers: find a unit or a category by its name, part of it, its pinyin initials or its code
(东华门 / dhm / 110101-CGW → 东华门街道), and turn what a form sent — a code, a name or a
picker's label — back into the code, with a Chinese answer when a name is unknown or
ambiguous. The index is built once per process and rebuilt when the units or categories
change (`taxonomy.service.cached`, keyed on the reference tables' fingerprint).

GET /console/lookup/units?q= and /console/lookup/categories?q= feed static/picker.js; the
units offered are those an order can be sent to (`console.service.handling_units`: neither the
city nor the service centre), the same rule the actions apply."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pypinyin import Style, lazy_pinyin
from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.errors import Invalid
from jiesu.org.models import Unit
from jiesu.taxonomy.models import Category
from jiesu.taxonomy.service import cached, pack_settings
from jiesu.tickets.lifecycle import Action, UnitRef, escalation_refusal
from jiesu.tickets.service import get_ticket
from jiesu.web.deps import ReadSession, require_page
from jiesu.web.params import BigId

SEP = " › "
LIMIT = 20
KIND_WORD = {"units": "单位", "categories": "事项分类", "streets": "街道（乡镇）"}


@dataclass(frozen=True)
class Option:
    """One choice of a picker: the name big, the code small, where it sits (parent) muted."""

    code: str
    name: str
    context: str  # 东城区 (a unit's parent) / 城乡建设 › 市政设施 (a category's parents)
    kind: str  # the unit's kind, or "category"
    initials: str  # pinyin initials of the name: dhmjd
    spelled: str  # the whole pinyin, no spaces: donghuamenjiedao
    path: str = ""  # a unit's materialised path (the escalation rule compares levels)
    aliases: tuple[str, ...] = ()  # a unit's short name and aliases (东城区城管委, 东城城管委)

    @property
    def label(self) -> str:
        return f"{self.context}{SEP}{self.name}" if self.context else self.name

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "name": self.name, "context": self.context,
                "label": self.label}  # fmt: skip


def _option(
    code: str, name: str, context: str, kind: str, path: str = "", aliases: tuple[str, ...] = ()
) -> Option:
    letters = lazy_pinyin(name, style=Style.FIRST_LETTER, errors="ignore")
    return Option(code, name, context, kind, "".join(letters).lower(),
                  "".join(lazy_pinyin(name, errors="ignore")).lower(), path, aliases)  # fmt: skip


def unit_index(*, db_session: Session) -> tuple[Option, ...]:
    """Every unit an order can be sent to, streets first (as `handling_units` orders them)."""

    def build() -> tuple[Option, ...]:
        rows = db_session.execute(
            select(
                Unit.id,
                Unit.code,
                Unit.name,
                Unit.kind,
                Unit.parent_id,
                Unit.function,
                Unit.path,
                Unit.short_name,
                Unit.aliases,
            ).where(Unit.active)
        ).all()
        name_of = {r.id: (r.name, r.kind) for r in rows}
        order = {"street": 0, "district": 1, "department": 2, "company": 3, "community": 4}
        out = []
        for r in rows:
            if r.kind == "city" or r.function == "service_centre":
                continue
            parent = name_of.get(r.parent_id or -1)
            context = parent[0] if parent and parent[1] != "city" else ""
            aliases = tuple(a for a in [r.short_name, *(r.aliases or [])] if a and a != r.name)
            option = _option(r.code, r.name, context, r.kind, r.path, aliases)
            out.append((order.get(r.kind, 9), r.code, option))
        return tuple(o for *_, o in sorted(out, key=lambda x: (x[0], x[1])))

    return cached("picker_units", build, db_session=db_session)


def category_index(*, db_session: Session) -> tuple[Option, ...]:
    """Every active category, by code; the context is its parents' names."""

    def build() -> tuple[Option, ...]:
        rows = db_session.execute(
            select(Category.code, Category.name, Category.full_name)
            .where(Category.active)
            .order_by(Category.code)
        ).all()
        out = []
        for code, name, full_name in rows:
            parts = [p.strip() for p in (full_name or "").split("›")]
            context = SEP.join(parts[:-1]) if len(parts) > 1 else ""
            out.append(_option(code, name, context, "category"))
        return tuple(out)

    return cached("picker_categories", build, db_session=db_session)


def options(kind: str, *, db_session: Session) -> tuple[Option, ...]:
    if kind == "categories":
        return category_index(db_session=db_session)
    units = unit_index(db_session=db_session)
    return tuple(o for o in units if o.kind == "street") if kind == "streets" else units


def _rank(q: str, o: Option) -> int | None:
    """How well `q` (stripped, lower case) matches: smaller is better, None not at all."""
    code = o.code.lower()
    if q == code:
        return 0
    flat = o.label.replace(" ", "")
    if q == o.name or q == flat:
        return 1
    if o.name.startswith(q):
        return 2
    if q in o.name:
        return 3
    if o.initials.startswith(q):
        return 4
    if code.startswith(q):
        return 5
    if o.spelled.startswith(q):
        return 6
    if any(q in a for a in o.aliases):
        return 7
    if q in o.initials or q in o.spelled or q in flat:
        return 8
    return None


def search(q: str, choices: Iterable[Option], limit: int = LIMIT) -> list[Option]:
    """The best matches for what was typed, best first (ties keep the index's order)."""
    q = q.strip().lower().replace(" ", "")
    if not q:
        return []
    hits = []
    for i, o in enumerate(choices):
        rank = _rank(q, o)
        if rank is not None:
            hits.append((rank, i, o))
    hits.sort(key=lambda h: (h[0], h[1]))
    return [o for _, _, o in hits[:limit]]


def resolve(text: str, choices: tuple[Option, ...], *, kind: str, field: str, label: str) -> str:
    """The code meant by what a form sent: a code, an exact name or label, or the one name
    that contains it. Unknown or ambiguous: a Chinese refusal naming the field by its label."""
    text = text.strip()
    by_code = {o.code: o for o in choices}
    first = text.split()[0] if text.split() else ""
    if text in by_code:
        return text
    if first in by_code:  # "110101-CGW 东华门街道" as the old pickers sent it
        return first
    flat = text.replace(" ", "")
    exact = [o for o in choices if flat in (o.name, o.label.replace(" ", "")) or flat in o.aliases]
    if len(exact) == 1:
        return exact[0].code
    # a part of one name (东华门街), else pinyin initials as the picker reads them (dhm); never
    # a fuzzy guess from anything else typed
    found = exact or [o for o in choices if flat in o.name]
    if not found and INITIALS.fullmatch(flat):
        found = search(flat, choices, LIMIT + 1)
    word = KIND_WORD.get(kind, "")
    if len(found) == 1:
        return found[0].code
    if not found:
        raise Invalid(f"{label}：未知的{word}「{text}」，请输入名称、拼音首字母或编码后从列表中选择",
                      field=field)  # fmt: skip
    shown = "、".join(o.label for o in found[:5]) + (" 等" if len(found) > 5 else "")
    raise Invalid(f"{label}：「{text}」对应多个{word}（{shown}），请从列表中选择一个", field=field)


INITIALS = re.compile(r"[A-Za-z]{2,12}")

PICKER_FIELDS = {"unit": "units", "units": "units"}


def picker_of(f: Any) -> str | None:
    """Which picker a lifecycle field gets: units for unit fields, categories for 改分类."""
    if f.name == "category":
        return "categories"
    return PICKER_FIELDS.get(f.kind)


def resolve_fields(action: Action, data: dict[str, Any], *, db_session: Session) -> dict[str, Any]:
    """An action form's unit and category fields as codes (the API takes codes only)."""
    out = dict(data)
    for f in action.fields:
        kind = picker_of(f)
        if kind is None or f.name not in out:
            continue
        label = "事项分类" if kind == "categories" else f.label
        choices = options(kind, db_session=db_session)
        value = out[f.name]
        if isinstance(value, list):
            out[f.name] = [resolve(v, choices, kind=kind, field=f.name, label=label) for v in value]
        elif isinstance(value, str):
            out[f.name] = resolve(value, choices, kind=kind, field=f.name, label=label)
    return out


def display_name(code: str | None, kind: str, *, db_session: Session) -> str:
    """What a prefilled picker shows for a code: its name (the label when the name is shared)."""
    if not code:
        return ""
    choices = options(kind, db_session=db_session)
    match = [o for o in choices if o.code == code]
    if not match:
        return code
    same = sum(1 for o in choices if o.name == match[0].name)
    return match[0].name if same == 1 else match[0].label


# ---- the JSON the picker reads -------------------------------------------------------------

router = APIRouter()
Actor = Annotated[Principal, Depends(require_page("tickets.act"))]
Q = Annotated[str, Query(max_length=60)]


def for_action(
    choices: tuple[Option, ...], action: str, ticket_id: int, *, actor: Principal,
    db_session: Session,
) -> tuple[Option, ...]:  # fmt: skip
    """The units an action on this ticket may name, by the rules the action applies: never the
    lead itself for 吹哨 and 提级, and for 提级 only a unit above the lead (or the pack's
    escalation unit). The ticket is read with the viewer's visibility (404 otherwise)."""
    if action not in ("escalate", "whistle"):
        return choices
    lead = get_ticket(ticket_id, actor=actor, db_session=db_session).lead_unit
    if lead is None:
        return choices
    out = tuple(o for o in choices if o.code != lead.code)
    if action == "escalate":
        top = pack_settings(db_session=db_session).get("escalation_unit")
        top = str(top) if top is not None else None
        ref = UnitRef(lead.code, lead.kind, lead.path)
        out = tuple(
            o for o in out if escalation_refusal(ref, UnitRef(o.code, o.kind, o.path), top) is None
        )
    return out


@router.get("/console/lookup/units", include_in_schema=False)
def lookup_units(
    actor: Actor, session: ReadSession, q: Q = "", street: bool = False,
    ticket: BigId | None = None, action: Annotated[str, Query(max_length=40)] = "",
) -> Any:  # fmt: skip
    """Units an order can be sent to, matching `q` (streets only with street=true; with a
    ticket and an action, only those that action may name)."""
    choices = options("streets" if street else "units", db_session=session)
    if ticket is not None and action:
        choices = for_action(choices, action, ticket, actor=actor, db_session=session)
    found = search(q, choices)
    return JSONResponse({"items": [o.as_json() for o in found]})


@router.get("/console/lookup/categories", include_in_schema=False)
def lookup_categories(actor: Actor, session: ReadSession, q: Q = "") -> Any:
    """Active categories matching `q`."""
    found = search(q, options("categories", db_session=session))
    return JSONResponse({"items": [o.as_json() for o in found]})
