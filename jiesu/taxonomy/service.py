"""Reading the city's settings and calendar as the rules modules need them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import chinese_calendar
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import CalendarOverride, Category, CitySetting, DispatchRule
from jiesu.taxonomy.routing import Catalogue, Rule, UnitInfo
from jiesu.timelimits.calendar import WorkCalendar
from jiesu.timelimits.clocks import Clocks

# ---- reference data, read once per change --------------------------------------------------
# Units, categories, the dispatch catalogue, the pack's settings and the calendar change a few
# times a year (a pack load, an admin edit) but every page and every intake reads them. Each
# process keeps what it built under a fingerprint of those tables, taken in one small query
# per use; writers that change a row in place without a timestamp (pack load, calendar days)
# call `bump_reference`. A time limit bounds what a change made behind our back could cost.

REFERENCE_KEY = "reference"
REFERENCE_TTL_S = 60.0
T = TypeVar("T")
_built: dict[tuple[str, str], tuple[tuple[Any, ...], float, Any]] = {}


def bump_reference(*, db_session: Session) -> None:
    """Tell every process that reference data changed (in the caller's transaction)."""
    db_session.info.pop(REFERENCE_KEY, None)
    row = db_session.get(CitySetting, REFERENCE_KEY)
    if row is None:
        db_session.add(CitySetting(key=REFERENCE_KEY, value=uuid.uuid4().hex))
    else:
        row.value = uuid.uuid4().hex


def _fingerprint(db_session: Session) -> tuple[Any, ...]:
    """Taken once per session (a request's unit of work), however many things it reads."""
    known = db_session.info.get(REFERENCE_KEY)
    if known is None:
        known = db_session.info[REFERENCE_KEY] = _take_fingerprint(db_session)
    return known  # type: ignore[no-any-return]


def _take_fingerprint(db_session: Session) -> tuple[Any, ...]:
    def stats(table: Any, *cols: Any) -> Any:
        return select(*cols).select_from(table).scalar_subquery()

    row = db_session.execute(
        select(
            stats(Unit, func.count()),
            stats(Unit, func.max(Unit.updated_at)),
            stats(Category, func.count()),
            stats(Category, func.max(Category.updated_at)),
            stats(DispatchRule, func.count()),
            stats(CalendarOverride, func.count()),
            stats(CitySetting, func.max(CitySetting.updated_at)),
            # the mark itself: two changes in the same clock tick (a pinned test clock, a
            # coarse one) leave the times equal, never the mark
            select(CitySetting.value).where(CitySetting.key == REFERENCE_KEY).scalar_subquery(),
        )
    ).one()
    return (str(db_session.get_bind().url), *row)


def cached(name: str, build: Callable[[], T], *, db_session: Session) -> T:
    """`build()`'s result, made again only when the reference tables changed. What it returns
    is shared by every request of the process: plain values, never ORM rows."""
    key = (str(db_session.get_bind().url), name)
    mark = _fingerprint(db_session)
    hit = _built.get(key)
    now = time.monotonic()
    if hit is not None and hit[0] == mark and hit[1] > now:
        return hit[2]  # type: ignore[no-any-return]
    value = build()
    if len(_built) > 1_000:  # test runs make many databases; a server has one
        _built.clear()
    _built[key] = (mark, now + REFERENCE_TTL_S, value)
    return value


def pack_settings(*, db_session: Session) -> dict[str, Any]:
    """The loaded pack's settings (tiers, tier rules, weights …); empty before any pack."""

    def build() -> dict[str, Any]:
        row = db_session.get(CitySetting, "pack")
        return dict(row.value) if row is not None else {}

    return dict(cached("pack_settings", build, db_session=db_session))


def city_clocks(*, db_session: Session) -> Clocks:
    """Clocks on the official calendar under the city's overrides (pack and admin)."""

    def build() -> Clocks:
        overrides = {
            o.day: o.kind == "workday" for o in db_session.scalars(select(CalendarOverride))
        }
        return Clocks(WorkCalendar(overrides), city_tz())

    return cached("city_clocks", build, db_session=db_session)


def calendar_warnings(*, db_session: Session, today: date) -> list[str]:
    """Years about to be used (this one and the next) that the official calendar package does not
    know and that have no overrides yet: working days there fall back to Monday–Friday."""
    years_with_overrides = {o.day.year for o in db_session.scalars(select(CalendarOverride))}
    warnings = []
    for year in (today.year, today.year + 1):
        try:
            chinese_calendar.is_workday(date(year, 1, 2))
        except NotImplementedError:
            if year not in years_with_overrides:
                warnings.append(
                    f"{year} 年的节假日与调休安排尚未录入：该年工作日暂按周一至周五计算，"
                    f"请按国务院办公厅公布的安排录入日历 / the {year} holiday schedule is missing:"
                    " working days fall back to Monday–Friday until it is entered"
                )
    return warnings


def load_catalogue(*, db_session: Session) -> Catalogue:
    """The dispatch catalogue (派单目录) over the active units, ready for `Catalogue.route`."""
    return cached("catalogue", lambda: _build_catalogue(db_session), db_session=db_session)


@dataclass(frozen=True)
class UnitOption:
    """A unit as a picker or a label needs it."""

    code: str
    name: str
    kind: str


def unit_options(*, db_session: Session) -> dict[str, UnitOption]:
    """Every active unit by code (names for labels, and the dispatch pickers)."""

    def build() -> dict[str, UnitOption]:
        rows = db_session.execute(
            select(Unit.code, Unit.name, Unit.kind).where(Unit.active).order_by(Unit.code)
        )
        return {code: UnitOption(code, name, kind) for code, name, kind in rows}

    return cached("unit_options", build, db_session=db_session)


def _build_catalogue(db_session: Session) -> Catalogue:
    units = list(db_session.scalars(select(Unit).where(Unit.active)))
    code_of = {u.id: u.code for u in units}
    infos = {
        u.code: UnitInfo(u.code, u.kind, code_of.get(u.parent_id or -1), u.function) for u in units
    }
    cat_code = dict(db_session.execute(select(Category.id, Category.code)).all())
    rules = [
        Rule(
            cat_code[r.category_id],
            r.route,
            r.function,
            code_of.get(r.unit_id or -1),
            code_of.get(r.district_id or -1),
            r.note,
        )
        for r in db_session.scalars(select(DispatchRule).where(DispatchRule.active))
        if r.category_id in cat_code
    ]
    return Catalogue(rules, infos)


# ---- the admin's edits: catalogue, categories, settings (each audited) ---------------------


def _actor_user(actor: Any, db_session: Session) -> Any:
    from jiesu.org.models import User

    return db_session.get(User, actor.user_id)


def find_unit(text: str, *, db_session: Session, field: str, label: str) -> Unit:
    """The one unit a form names: its code, its name or short name, or a picker's "name code"
    (never a guess from part of a name: a merge or a move must hit the unit meant). Chinese
    refusal otherwise, with the names that contain the text as hints."""
    from jiesu.errors import Invalid

    text = (text or "").strip()
    if not text:
        raise Invalid(f"请填写{label}", field=field)
    units = list(db_session.scalars(select(Unit)))
    for key in (text, text.split()[0], text.split()[-1]):  # "东华门街道 110101001" too
        found = [u for u in units if u.code == key]
        if found:
            return found[0]
    active = [u for u in units if u.active]
    flat = text.replace(" ", "")
    match = [u for u in active if flat in (u.name, u.short_name)]
    if len(match) == 1:
        return match[0]
    if len(match) > 1:
        shown = "、".join(f"{u.name}（{u.code}）" for u in match[:5])
        raise Invalid(f"{label}：「{text}」对应多个单位（{shown}），请写明编码", field=field)
    near = [u.name for u in active if flat in u.name][:5]  # a name is never guessed
    hint = f"，是否要找：{'、'.join(near)}" if near else ""
    raise Invalid(f"{label}：没有名称或编码为「{text}」的单位{hint}", field=field)


def find_category(text: str, *, db_session: Session, field: str, label: str) -> Category:
    """The one category a form names: code, name, full name or "name code" (never a guess)."""
    from jiesu.errors import Invalid

    text = (text or "").strip()
    if not text:
        raise Invalid(f"请填写{label}", field=field)
    cats = list(db_session.scalars(select(Category)))
    for key in (text, text.split()[0], text.split()[-1]):
        found = [c for c in cats if c.code == key]
        if found:
            return found[0]
    active = [c for c in cats if c.active]
    flat = text.replace(" ", "")
    match = [c for c in active if flat in (c.name, c.full_name.replace(" ", ""))]
    if len(match) == 1:
        return match[0]
    if len(match) > 1:
        shown = "、".join(f"{c.full_name}（{c.code}）" for c in match[:5])
        raise Invalid(f"{label}：「{text}」对应多个分类（{shown}），请写明编码", field=field)
    near = [c.name for c in active if flat in c.name][:5]  # a name is never guessed
    hint = f"，是否要找：{'、'.join(near)}" if near else ""
    raise Invalid(f"{label}：没有名称或编码为「{text}」的事项分类{hint}", field=field)


ROUTES = {"street": "直派属地街乡", "district_function": "属地职能部门", "unit": "指定单位"}


@dataclass
class RuleIn:
    """One catalogue entry as the admin's form sends it (names or codes)."""

    category: str
    route: str
    unit: str = ""
    function: str = ""
    district: str = ""
    note: str = ""
    active: bool = True


def _rule_view(rule: DispatchRule, db_session: Session) -> dict[str, Any]:
    def code(unit_id: int | None) -> str | None:
        unit = db_session.get(Unit, unit_id) if unit_id else None
        return unit.code if unit else None

    cat = db_session.get(Category, rule.category_id)
    return {"category": cat.code if cat else None, "route": rule.route,
            "function": rule.function, "unit": code(rule.unit_id),
            "district": code(rule.district_id), "note": rule.note,
            "active": rule.active}  # fmt: skip


def save_rule(
    rule_id: int | None, data: RuleIn, *, actor: Any, db_session: Session, ip: str | None
) -> DispatchRule:
    """Add (rule_id None) or change a dispatch catalogue entry; audited before → after."""
    from jiesu.auth.service import audit
    from jiesu.errors import Conflict, Invalid, NotFound

    cat = find_category(data.category, db_session=db_session, field="category", label="事项分类")
    if data.route not in ROUTES:
        raise Invalid("派单方式：请选择直派属地街乡、属地职能部门或指定单位", field="route")
    unit = None
    function = (data.function or "").strip() or None
    if data.route == "unit":
        unit = find_unit(data.unit, db_session=db_session, field="unit", label="承办单位")
        function = None
    elif data.route == "district_function":
        if not function:
            raise Invalid("属地职能部门：派单方式为属地职能部门时请选择部门", field="function")
        if len(function) > 40:
            raise Invalid("属地职能部门：最多 40 个字符", field="function")
    else:
        function = None
    district = None
    if (data.district or "").strip():
        district = find_unit(data.district, db_session=db_session, field="district",
                             label="适用区")  # fmt: skip
        if district.kind != "district":
            raise Invalid(f"适用区：「{district.name}」不是区", field="district")
    note = (data.note or "").strip() or None
    if note and len(note) > 200:
        raise Invalid("说明：最多 200 个字", field="note")
    district_id = district.id if district else None
    same = db_session.scalar(
        select(DispatchRule).where(DispatchRule.category_id == cat.id,
                                   DispatchRule.district_id.is_(None) if district_id is None
                                   else DispatchRule.district_id == district_id)
    )  # fmt: skip
    if rule_id is None:
        if same is not None:
            raise Conflict(
                f"事项分类：「{cat.full_name}」在{district.name if district else '全市'}已有派单目录条目，"
                "请修改该条目", field="category",
            )  # fmt: skip
        rule = DispatchRule(category_id=cat.id, district_id=district_id)
        db_session.add(rule)
        before: dict[str, Any] | None = None
    else:
        found = db_session.get(DispatchRule, rule_id)
        if found is None:
            raise NotFound("没有这个派单目录条目")
        rule = found
        if same is not None and same.id != rule.id:
            raise Conflict("事项分类：该分类在该区已有另一条派单目录条目", field="category")
        before = _rule_view(rule, db_session)
        rule.category_id, rule.district_id = cat.id, district_id
    rule.route, rule.function, rule.note = data.route, function, note
    rule.unit_id = unit.id if unit else None
    rule.active = data.active
    db_session.flush()
    after = _rule_view(rule, db_session)
    if before != after:
        bump_reference(db_session=db_session)
        audit("catalogue_save", db_session=db_session, user=_actor_user(actor, db_session),
              ip=ip, target=after["category"], before=before, after=after)  # fmt: skip
    return rule


def _category_view(cat: Category) -> dict[str, Any]:
    return {"name": cat.name, "tier": cat.tier, "active": cat.active}


def _refresh_names(cat: Category, db_session: Session, default_tier: str) -> None:
    """A category's full name and effective tier, and those of everything under it."""
    parent = db_session.get(Category, cat.parent_id) if cat.parent_id else None
    cat.full_name = f"{parent.full_name} › {cat.name}" if parent else cat.name
    cat.effective_tier = cat.tier or (parent.effective_tier if parent else default_tier)
    for child in db_session.scalars(select(Category).where(Category.parent_id == cat.id)):
        _refresh_names(child, db_session, default_tier)


def _check_tier(tier: str | None, db_session: Session) -> None:
    from jiesu.errors import Invalid

    tiers = pack_settings(db_session=db_session).get("tiers") or {}
    if tier and tier not in tiers:
        raise Invalid(f"处置层级：请从 {'、'.join(tiers)} 中选择", field="tier")


def update_category(
    category_id: int, *, name: str, tier: str | None, active: bool, actor: Any,
    db_session: Session, ip: str | None,
) -> Category:  # fmt: skip
    """Rename, set or clear the category's own tier, deactivate (with everything under it;
    never deleted: orders point at it). Audited before → after."""
    from jiesu.auth.service import audit
    from jiesu.errors import Invalid, NotFound

    cat = db_session.get(Category, category_id)
    if cat is None:
        raise NotFound("没有这个事项分类")
    name = (name or "").strip()
    if not name or len(name) > 60:
        raise Invalid("分类名称：须为 1–60 个字", field="name")
    tier = (tier or "").strip() or None
    _check_tier(tier, db_session)
    before = _category_view(cat)
    cat.name, cat.tier, cat.active = name, tier, active
    default_tier = pack_settings(db_session=db_session).get("default_tier") or ""
    _refresh_names(cat, db_session, default_tier)
    if not active:  # the subtree goes with it
        stack = [cat.id]
        while stack:
            for child in db_session.scalars(
                select(Category).where(Category.parent_id == stack.pop())
            ):
                child.active = False
                stack.append(child.id)
    after = _category_view(cat)
    if before != after:
        bump_reference(db_session=db_session)
        audit("category_update", db_session=db_session, user=_actor_user(actor, db_session),
              ip=ip, target=cat.code, before=before, after=after)  # fmt: skip
    return cat


def add_category(
    parent: str, *, code: str, name: str, tier: str | None, actor: Any, db_session: Session,
    ip: str | None,
) -> Category:  # fmt: skip
    """A child under an existing category (at most three levels, as in a pack)."""
    import re

    from jiesu.auth.service import audit
    from jiesu.errors import Conflict, Invalid

    top = find_category(parent, db_session=db_session, field="parent", label="上级分类")
    if top.level >= 3:
        raise Invalid("上级分类：事项分类最多三级", field="parent")
    code = (code or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,20}", code):
        raise Invalid("分类编码：须为 1–20 位字母或数字", field="code")
    if db_session.scalar(select(Category.id).where(Category.code == code)):
        raise Conflict(f"分类编码：{code} 已存在", field="code")
    name = (name or "").strip()
    if not name or len(name) > 60:
        raise Invalid("分类名称：须为 1–60 个字", field="name")
    tier = (tier or "").strip() or None
    _check_tier(tier, db_session)
    cat = Category(code=code, name=name, parent_id=top.id, level=top.level + 1,
                   full_name="", tier=tier, effective_tier="", seven_haves=list(top.seven_haves),
                   five_qualities=list(top.five_qualities), keywords=[], active=True)  # fmt: skip
    db_session.add(cat)
    db_session.flush()
    default_tier = pack_settings(db_session=db_session).get("default_tier") or ""
    _refresh_names(cat, db_session, default_tier)
    bump_reference(db_session=db_session)
    audit("category_create", db_session=db_session, user=_actor_user(actor, db_session), ip=ip,
          target=code, before=None, after={"name": name, "parent": top.code, "tier": tier})  # fmt: skip
    return cat


# The settings the admin edits on the 考核权重 page; each checked as the pack's parser does.
WEIGHT_PARTS = ("response", "resolution", "satisfaction")


def check_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Validate the edited part (weights, task_force, small_sample, warnings) and return it.
    Raises Invalid with a Chinese sentence naming the field."""
    from jiesu.citypack.parse import UNIT_KINDS
    from jiesu.citypack.parse import WARNING_COUNTS as WARNING_COUNT_KEYS
    from jiesu.citypack.parse import WARNING_RATIOS as WARNING_RATIO_KEYS
    from jiesu.errors import Invalid

    out: dict[str, Any] = {}
    if "weights" in values:
        weights: dict[str, dict[str, float]] = {}
        for kind, w in values["weights"].items():
            if kind != "default" and kind not in UNIT_KINDS:
                raise Invalid(f"考核权重：未知的单位类型 {kind}", field=f"weights.{kind}")
            parts = {}
            for part in WEIGHT_PARTS:
                value = w.get(part)
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    raise Invalid("考核权重：每项权重须为不小于 0 的数", field=f"weights.{kind}")
                parts[part] = float(value)
            if abs(sum(parts.values()) - 1.0) > 1e-6:
                raise Invalid(
                    f"考核权重：三项权重之和须为 100%（现为 {sum(parts.values()) * 100:g}%）",
                    field=f"weights.{kind}",
                )
            weights[kind] = parts
        if "default" not in weights:
            raise Invalid("考核权重：须保留默认权重", field="weights.default")
        out["weights"] = weights
    if "task_force" in values:
        tf = {}
        for kind, n in values["task_force"].items():
            if kind not in UNIT_KINDS:
                raise Invalid(f"专班数量：未知的单位类型 {kind}", field=f"task_force.{kind}")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise Invalid("专班数量：须为不小于 0 的整数", field=f"task_force.{kind}")
            tf[kind] = n
        out["task_force"] = tf
    if "small_sample" in values:
        n = values["small_sample"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise Invalid("小样本门槛：须为不小于 0 的整数", field="small_sample")
        out["small_sample"] = n
    if "warnings" in values:
        ws: dict[str, Any] = {}
        for key, v in values["warnings"].items():
            if key in WARNING_COUNT_KEYS:
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise Invalid("预警阈值：次数与天数须为大于 0 的整数", field=f"warnings.{key}")
            elif key in WARNING_RATIO_KEYS:
                if not isinstance(v, int | float) or isinstance(v, bool) or v < 1:
                    raise Invalid("预警阈值：倍数须为不小于 1 的数", field=f"warnings.{key}")
            else:
                raise Invalid(f"预警阈值：未知的阈值 {key}", field=f"warnings.{key}")
            ws[key] = v
        out["warnings"] = ws
    return out


def set_pack_values(
    values: dict[str, Any], *, actor: Any, db_session: Session, ip: str | None
) -> dict[str, Any]:
    """Store checked values in the city's settings (the `pack` row the rankings and the
    warning scan read), so the next ranking or scan uses them. Audited before → after."""
    from jiesu.auth.service import audit

    clean = check_settings(values)
    row = db_session.get(CitySetting, "pack")
    current = dict(row.value) if row is not None else {}
    before = {k: current.get(k) for k in clean}
    changed = {k: v for k, v in clean.items() if current.get(k) != v}
    if not changed:
        return current
    new = {**current, **changed}
    if row is None:
        db_session.add(CitySetting(key="pack", value=new))
    else:
        row.value = new
    bump_reference(db_session=db_session)
    audit("settings_update", db_session=db_session, user=_actor_user(actor, db_session), ip=ip,
          changed=sorted(changed), before={k: before[k] for k in changed}, after=changed)  # fmt: skip
    return new
