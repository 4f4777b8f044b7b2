"""Intake intelligence (智能派单, SPEC §8): when a ticket comes in, suggest its category and
request type, resolve its place, find the lead unit by the dispatch catalogue, look for the same
event among recent tickets and for danger signs, and dispatch at once when the city's threshold
allows it. Also the model registry (versions, evaluation, the active one) and the training data
the city's own history gives. Services take `db_session=` and never commit."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from jiesu.access.policy import Principal
from jiesu.assessment import service as assessment
from jiesu.auth.service import audit
from jiesu.db.base import utcnow
from jiesu.errors import Invalid, NotFound
from jiesu.intel import address, duplicates, urgency
from jiesu.intel.classify import TextClassifier
from jiesu.intel.models import IntakeAdviceRow, IntelModel
from jiesu.intel.shapes import (
    DuplicateCandidate,
    IntakeAdvice,
    LabelSuggestion,
    LeadSuggestion,
    PlaceSuggestion,
    Ranked,
    UrgencySuggestion,
)
from jiesu.org.models import Unit, User
from jiesu.settings import get_settings
from jiesu.taxonomy.models import Category, CitySetting, RequestType
from jiesu.taxonomy.service import (
    bump_reference,
    cached,
    load_catalogue,
    pack_settings,
    unit_options,
)
from jiesu.tickets.lifecycle import CENTRE_INTAKE
from jiesu.tickets.models import Event, Ticket

KINDS = {"category": "事项分类", "request_type": "诉求类型"}

# The city's settings for intake intelligence: `intel:` in pack.yaml, under the admin's own
# values (city_setting "intel"). No threshold, no automatic dispatch.
DEFAULTS: dict[str, Any] = {
    "auto_dispatch": None,  # confidence (0–1) above which a ticket is dispatched on suggestions
    "place_confidence": 0.8,  # a resolved place is written to the ticket from this confidence
    "duplicate_window_days": 7,
    "duplicate_distance_m": 300,
    "duplicate_block": 0.9,  # a candidate this similar stops automatic dispatch
}
ADMIN_KEY = "intel"
RECENT_LIMIT = 500  # recent tickets compared with a new one, per condition and in all
MERGE_INTO_NOT = ("merged", "closed", "rejected")  # a candidate must be able to be the master


def intel_settings(*, db_session: Session) -> dict[str, Any]:
    """Read at every intake: kept with the reference data (`cached`; a city setting's change
    moves the fingerprint), not asked for each time."""

    def build() -> dict[str, Any]:
        own = db_session.get(CitySetting, ADMIN_KEY)
        return {
            **DEFAULTS,
            **(pack_settings(db_session=db_session).get("intel") or {}),
            **(own.value if own else {}),
        }

    return dict(cached("intel_settings", build, db_session=db_session))


def set_intel_settings(
    values: dict[str, Any], *, actor: Principal, db_session: Session, ip: str | None
) -> dict[str, Any]:
    """The admin's thresholds; each checked, then stored over the pack's."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in DEFAULTS:
            raise Invalid(f"未知设置 {key} / unknown setting", field=key)
        if key == "auto_dispatch" and value in (None, ""):
            clean[key] = None
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise Invalid(f"{key} 须为数字 / must be a number", field=key) from None
        if key in ("auto_dispatch", "place_confidence", "duplicate_block") and not (
            0 <= number <= 1
        ):
            raise Invalid(f"{key} 须在 0–1 之间 / must be within 0–1", field=key)
        if key in ("duplicate_window_days", "duplicate_distance_m") and not 0 < number <= 10_000:
            raise Invalid(f"{key} 须为正数 / must be positive", field=key)
        clean[key] = (
            int(number) if key.startswith("duplicate_") and key != "duplicate_block" else number
        )
    row = db_session.get(CitySetting, ADMIN_KEY)
    if row is None:
        db_session.add(CitySetting(key=ADMIN_KEY, value=clean))
    else:
        row.value = {**row.value, **clean}
    audit("intel_settings", db_session=db_session, user=db_session.get(User, actor.user_id), ip=ip,
          **clean)  # fmt: skip
    bump_reference(db_session=db_session)  # every process's `intel_settings` sees them
    return intel_settings(db_session=db_session)


# ---- the model registry ------------------------------------------------------------------------


def register_model(
    directory: Path,
    *,
    db_session: Session,
    name: str | None = None,
    activate: bool = False,
    created_by_id: int | None = None,
) -> IntelModel:
    """Store a model written by `jiesu intel train --out DIR` as the next version of its kind.
    It is checked by loading it first: a model that does not load is never registered."""
    model = TextClassifier.load(directory)  # checks the SHA-256 in meta.json
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    kind = meta.get("kind") or "category"
    if kind not in KINDS:
        raise Invalid(f"未知的模型类型 {kind} / unknown model kind", field="kind")
    artifact = (directory / "model.joblib").read_bytes()
    last = db_session.scalar(
        select(IntelModel.version).where(IntelModel.kind == kind).order_by(
            IntelModel.version.desc()).limit(1)
    )  # fmt: skip
    row = IntelModel(
        kind=kind,
        version=(last or 0) + 1,
        name=(name or meta.get("name") or f"{KINDS[kind]}模型")[:100],
        source=str(meta.get("source") or directory)[:300],
        rows=int(meta.get("training_rows") or 0),
        labels=list(model.labels),
        evaluation=meta.get("evaluation") or {},
        meta={k: v for k, v in meta.items() if k != "evaluation"},
        artifact=artifact,
        sha256=hashlib.sha256(artifact).hexdigest(),
        created_by_id=created_by_id,
        created_at=utcnow(),
    )
    db_session.add(row)
    db_session.flush()
    if activate:
        activate_model(row.id, db_session=db_session)
    return row


def activate_model(
    model_id: int, *, db_session: Session, actor: Principal | None = None, ip: str | None = None
) -> IntelModel:
    row = db_session.get(IntelModel, model_id)
    if row is None:
        raise NotFound("没有这个模型 / no such model")
    for other in db_session.scalars(
        select(IntelModel).where(IntelModel.kind == row.kind, IntelModel.active)
    ):
        other.active = False
    db_session.flush()
    row.active, row.activated_at = True, utcnow()
    bump_reference(db_session=db_session)  # every process's `active_model` sees it
    if actor is not None:
        audit("model_activate", db_session=db_session, user=db_session.get(User, actor.user_id), ip=ip,
              target=f"{row.kind} v{row.version}")  # fmt: skip
    return row


def deactivate_models(kind: str, *, db_session: Session) -> None:
    for row in db_session.scalars(select(IntelModel).where(IntelModel.kind == kind)):
        row.active = False
    bump_reference(db_session=db_session)


_loaded: dict[tuple[str, int], TextClassifier] = {}


@dataclass(frozen=True)
class ModelRef:
    """The active model as intake needs it: its id and label, not its evaluation (the JSON of a
    200-class confusion matrix is not read on every intake)."""

    id: int
    name: str
    version: int


def active_model(
    kind: str, *, db_session: Session
) -> tuple[ModelRef | None, TextClassifier | None]:
    """The active model of a kind, loaded once per process (artifacts are immutable by id).

    Which model is active is reference data: kept with the units and categories (`cached`,
    one fingerprint query per request for all of them) rather than asked on every intake (a
    query per kind, 6.5% of a create). Activating or deactivating a model bumps the reference
    mark (`activate_model`, `deactivate_models`), so every process sees it at its next
    request."""

    def find() -> ModelRef | None:
        found = db_session.execute(
            select(IntelModel.id, IntelModel.name, IntelModel.version).where(
                IntelModel.kind == kind, IntelModel.active)
        ).first()  # fmt: skip
        return ModelRef(*found) if found is not None else None

    ref = cached(f"active_model:{kind}", find, db_session=db_session)
    if ref is None:
        return None, None
    key = (str(db_session.get_bind().url), ref.id)
    model = _loaded.get(key)
    if model is None:
        row = db_session.get(IntelModel, ref.id)
        assert row is not None
        artifact = db_session.scalar(select(IntelModel.artifact).where(IntelModel.id == row.id))
        if artifact is None or hashlib.sha256(artifact).hexdigest() != row.sha256:
            raise Invalid("模型文件校验失败 / model artifact does not match its checksum")
        with tempfile.TemporaryDirectory(prefix="jiesu-model-") as tmp:
            folder = Path(tmp)
            (folder / "model.joblib").write_bytes(artifact)
            (folder / "meta.json").write_text(
                json.dumps({**row.meta, "sha256": row.sha256, "kind": row.kind},
                           ensure_ascii=False), encoding="utf-8")  # fmt: skip
            model = TextClassifier.load(folder)
        if len(_loaded) > 32:
            _loaded.clear()
        _loaded[key] = model
    return ref, model


# ---- suggestions at intake -----------------------------------------------------------------


def _label(
    kind: str, row: ModelRef, model: TextClassifier, text: str, names: dict[str, str]
) -> LabelSuggestion:
    p = model.predict_one(text)
    ranked = [Ranked(code=_code(label, names), name=_name(label, names), confidence=round(c, 4))
              for label, c in p.ranked[:3]]  # fmt: skip
    return LabelSuggestion(
        code=_code(p.label, names), name=_name(p.label, names),
        confidence=round(float(p.confidence), 4), ranked=ranked,
        model=f"{row.name} v{row.version}",
    )  # fmt: skip


def _code(label: str, names: dict[str, str]) -> str:
    """A model's label is a code of the city's taxonomy, or (trained on a file) its name."""
    if label in names:
        return label
    by_name = {n: c for c, n in names.items()}
    return by_name.get(label, label)


def _name(label: str, names: dict[str, str]) -> str:
    return names.get(label) or label


def _category_names(db_session: Session) -> dict[str, str]:
    def build() -> dict[str, str]:
        rows = db_session.execute(select(Category.code, Category.name).where(Category.active))
        return dict(rows.all())

    return cached("category_names", build, db_session=db_session)


def _request_type_names(db_session: Session) -> dict[str, str]:
    def build() -> dict[str, str]:
        rows = db_session.execute(select(RequestType.code, RequestType.name))
        return dict(rows.all())

    return cached("request_type_names", build, db_session=db_session)


def gazetteer(*, db_session: Session) -> address.Gazetteer:
    boundaries = get_settings().boundaries
    if boundaries is not None and not boundaries.is_file():
        boundaries = None  # a missing file must not stop intake; /healthz is where to look
    return cached(
        "gazetteer",
        lambda: address.gazetteer_from_db(db_session=db_session, boundaries=boundaries),
        db_session=db_session,
    )


@dataclass
class Context:
    """What one intake knows while it advises."""

    ticket: Ticket
    actor: Principal
    settings: dict[str, Any]
    now: datetime


def advise(
    ticket: Ticket,
    *,
    actor: Principal,
    db_session: Session,
    now: datetime | None = None,
    automatic: bool = True,
) -> IntakeAdvice:
    """Suggest, apply what is safe to apply, dispatch when the city's threshold allows, and
    keep the advice with the ticket. Called in the intake transaction, after `create_ticket`."""
    now = now or utcnow()
    settings = intel_settings(db_session=db_session)
    advice = IntakeAdvice()
    text = f"{ticket.title}\n{ticket.content}"
    units = unit_options(db_session=db_session)

    cat_row, cat_model = active_model("category", db_session=db_session)
    if cat_model is not None and cat_row is not None:
        advice.category = _label("category", cat_row, cat_model, text,
                                 _category_names(db_session))  # fmt: skip
    else:
        advice.missing["category"] = "暂无启用的事项分类模型（系统管理 › 智能分派）"
    rt_row, rt_model = active_model("request_type", db_session=db_session)
    if rt_model is not None and rt_row is not None:
        advice.request_type = _label("request_type", rt_row, rt_model, text,
                                     _request_type_names(db_session))  # fmt: skip
    else:
        advice.missing["request_type"] = "暂无启用的诉求类型模型（系统管理 › 智能分派）"

    advice.place = _place(ticket, text, units, db_session=db_session)
    if (
        ticket.street_id is None
        and advice.place.street
        and (advice.place.confidence >= float(settings["place_confidence"]))
    ):
        street = db_session.scalar(select(Unit).where(Unit.code == advice.place.street))
        if street is not None:
            _set(ticket, db_session, street_id=street.id, district_id=street.parent_id)
            advice.applied.append("place")
    elif (
        ticket.district_id is None
        and ticket.street_id is None
        and advice.place.district
        and (advice.place.confidence >= float(settings["place_confidence"]))
    ):
        district = db_session.scalar(select(Unit.id).where(Unit.code == advice.place.district))
        if district is not None:
            _set(ticket, db_session, district_id=district)
            advice.applied.append("district")

    found = urgency.detect(text)
    if found.level != "normal":
        advice.urgency = UrgencySuggestion(
            level=found.level, signs=[s.label_zh for s in found.signs],
            tier=found.tier_suggestion, transfer=found.transfer, reason=found.reason_zh,
        )  # fmt: skip
        if not ticket.urgent:
            _make_urgent(ticket, db_session=db_session)
            advice.applied.append("urgency")

    category_code = ticket.category.code if ticket.category else None
    category_sure = category_code is not None
    if (
        category_code is None
        and advice.category
        and advice.category.code in _category_names(db_session)
    ):
        category_code = advice.category.code
    district = units_code(ticket.district_id, db_session)
    street = units_code(ticket.street_id, db_session)
    if advice.place is None or advice.place.source == "none":
        advice.missing["place"] = "地址未识别：请填写事发地址或所属街道"
    if category_code:
        route = load_catalogue(db_session=db_session).route(category_code, district, street)
        if route is not None:
            name = units[route.unit].name if route.unit in units else route.unit
            advice.lead = LeadSuggestion(unit=route.unit, name=name, reason=route.reason,
                                         confidence=_lead_confidence(advice, route, category_sure))  # fmt: skip
        elif street is None:
            advice.missing["lead"] = "派单目录按属地派单，须先确定街道（乡镇）"
        else:
            advice.missing["lead"] = "派单目录未给出该分类在此地的承办单位"
    else:
        advice.missing["lead"] = "事项分类未定，无法按派单目录查找承办单位"

    advice.duplicates = _duplicates(ticket, text, category_code, settings, now,
                                    db_session=db_session)  # fmt: skip

    threshold = settings.get("auto_dispatch")
    if ticket.id is None:  # a preview of a form still being filled in
        return advice
    if automatic:
        advice.why_not_automatic = _why_not(advice, ticket, actor, threshold, category_sure,
                                            settings)  # fmt: skip
        if not advice.why_not_automatic and advice.lead is not None:
            _dispatch(ticket, advice, actor, category_sure, db_session=db_session)
    db_session.add(IntakeAdviceRow(
        ticket_id=ticket.id, advice=advice.model_dump(mode="json"),
        category_model_id=cat_row.id if cat_row else None,
        auto_dispatched=advice.auto_dispatched, created_at=now,
    ))  # fmt: skip
    db_session.flush()
    db_session.expire(ticket)  # its place, category and lead may have changed underneath
    return advice


def _lead_confidence(advice: IntakeAdvice, route: Any, category_sure: bool) -> float:
    """How sure the lead is: the catalogue is a rule, so only what it was fed can be wrong: the
    category (unless given) and the place (when the rule routes by place and the place was
    resolved from the text rather than given)."""
    confidence = 1.0
    if not category_sure and advice.category is not None:
        confidence *= advice.category.confidence
    by_place = getattr(route.rule, "route", None) != "unit"
    if by_place and advice.place is not None and {"place", "district"} & set(advice.applied):
        confidence *= advice.place.confidence
    return round(confidence, 4)


def units_code(unit_id: int | None, db_session: Session) -> str | None:
    if unit_id is None:
        return None
    row = assessment.unit_index(db_session=db_session).by_id.get(unit_id)  # cached, no query
    return row.code if row is not None else None


def _place(
    ticket: Ticket, text: str, units: dict[str, Any], *, db_session: Session
) -> PlaceSuggestion:
    if ticket.street_id is not None:
        street = db_session.get(Unit, ticket.street_id)
        district = db_session.get(Unit, ticket.district_id) if ticket.district_id else None
        return PlaceSuggestion(
            street=street.code if street else None, street_name=street.name if street else None,
            district=district.code if district else None,
            district_name=district.name if district else None,
            confidence=1.0, source="given",
        )  # fmt: skip
    gaz = gazetteer(db_session=db_session)
    best = None
    for source, where in (("address", ticket.address), ("content", text)):
        if where:
            found = gaz.resolve(where)
            if found.street or found.district:
                best = (source, found)
                break
    if best is None and ticket.lat is not None and ticket.lng is not None:
        point = gaz.resolve_point(ticket.lng, ticket.lat)
        if point is not None and (point.street or point.district):
            best = ("point", point)
    if best is None:
        return PlaceSuggestion(source="none")
    source, r = best

    def name(code: str | None) -> str | None:
        return units[code].name if code and code in units else None

    return PlaceSuggestion(
        district=r.district, district_name=name(r.district), street=r.street,
        street_name=name(r.street), community=getattr(r, "community", None),
        confidence=round(float(r.confidence), 3), source=source,
        evidence=[str(e) for e in (getattr(r, "evidence", None) or [])][:5],
        candidates=[Ranked(code=c.street or c.district or "", name=name(c.street or c.district) or "",
                           confidence=round(float(c.confidence), 3))
                    for c in (getattr(r, "candidates", None) or [])[:5]],
    )  # fmt: skip


def _make_urgent(ticket: Ticket, *, db_session: Session) -> None:
    """Danger signs raise the tier (the pack's rule for urgent tickets, T2h in Beijing)."""
    from jiesu.timelimits.tiers import choose_tier

    settings = pack_settings(db_session=db_session)
    tier = ticket.tier
    if settings.get("tiers"):
        tier = choose_tier(
            settings.get("tier_rules") or [],
            category_code=ticket.category.code if ticket.category else None,
            request_type=ticket.request_type,
            urgent=True,
            category_tier=ticket.category.effective_tier if ticket.category else None,
            default_tier=settings["default_tier"],
        )
    _set(ticket, db_session, urgent=True, tier=tier)


def _set(ticket: Ticket, db_session: Session, **values: Any) -> None:
    """Part of taking the request in, not a change to it: written without a version step, so
    that the ticket's version still counts its events (as the portal's tracking code)."""
    if ticket.id is None:  # a preview: nothing stored
        for key, value in values.items():
            setattr(ticket, key, value)
        return
    db_session.execute(
        update(Ticket).where(Ticket.id == ticket.id).values(**values),
        execution_options={"synchronize_session": False},
    )
    for key, value in values.items():
        set_committed_value(ticket, key, value)
    if values.keys() & {"street_id", "district_id", "category_id", "request_type"}:
        assessment.refresh_intake(ticket, db_session=db_session)
    if "tier" in values:  # an urgent tier changes the limits the facts are judged by
        assessment.refresh(ticket, db_session=db_session)


def _duplicates(
    ticket: Ticket,
    text: str,
    category_code: str | None,
    settings: dict[str, Any],
    now: datetime,
    *,
    db_session: Session,
) -> list[DuplicateCandidate]:
    """Recent open tickets of the same street (or category) or caller that may be the same
    event."""
    window = timedelta(days=int(settings["duplicate_window_days"]))
    category_id = ticket.category_id
    if category_id is None and category_code:
        category_id = db_session.scalar(select(Category.id).where(Category.code == category_code))
    # Only rows the rule could accept: with a street, the same street (another street's ticket
    # is another event); without one, the same category (in the district when known); and the
    # caller's own. One query per condition, each the newest rows of its own index, rather than
    # one query with an OR: PostgreSQL's generic plan for the OR (a prepared statement, the
    # limit a parameter) walked the whole window by date and filtered 340,000 rows (100 ms
    # with a million tickets) where each branch reads a few hundred index entries.
    near = []
    if ticket.street_id is not None:
        near.append(Ticket.street_id == ticket.street_id)
    elif category_id is not None:
        near.append(and_(Ticket.category_id == category_id, Ticket.district_id == ticket.district_id)
                    if ticket.district_id is not None else Ticket.category_id == category_id)  # fmt: skip
    if ticket.requester_phone:
        near.append(Ticket.requester_phone == ticket.requester_phone)
    if not near:
        return []
    found_rows: dict[int, Any] = {}
    for condition in near:
        for r in db_session.execute(
            select(Ticket.id, Ticket.number, Ticket.title, Ticket.content, Ticket.created_at,
                   Ticket.street_id, Ticket.lat, Ticket.lng, Ticket.category_id)
            .where(condition, Ticket.created_at >= now - window, Ticket.id != ticket.id,
                   Ticket.master_id.is_(None), Ticket.status.notin_(MERGE_INTO_NOT))
            .order_by(Ticket.created_at.desc())
            .limit(RECENT_LIMIT)
        ):  # fmt: skip
            found_rows[r.id] = r
    rows = sorted(found_rows.values(), key=lambda r: r.created_at, reverse=True)[:RECENT_LIMIT]
    if not rows:
        return []
    new = duplicates.Doc(
        id=ticket.id, text=text, created_at=now, street=ticket.street_id,
        point=(ticket.lat, ticket.lng) if ticket.lat is not None and ticket.lng is not None else None,
        category=category_id,
    )  # fmt: skip
    recent = [_doc(r) for r in rows]
    found = duplicates.candidates(new, recent, window=window,
                                  max_distance_m=float(settings["duplicate_distance_m"]),
                                  limit=5)  # fmt: skip
    by_id = {r.id: r for r in rows}
    return [
        DuplicateCandidate(id=c.id, number=by_id[c.id].number, title=by_id[c.id].title,
                           score=round(float(c.score), 3), kind=c.kind, reasons=list(c.reasons_zh))
        for c in found
    ]  # fmt: skip


def _doc(r: Any) -> duplicates.Doc:
    """A ticket row (id, title, content, created_at, street_id, lat, lng, category_id) as the
    duplicates module compares it."""
    point = (r.lat, r.lng) if r.lat is not None and r.lng is not None else None
    return duplicates.Doc(
        id=r.id,
        text=f"{r.title}\n{r.content}",
        created_at=r.created_at,
        street=r.street_id,
        point=point,
        category=r.category_id,
    )


def _why_not(
    advice: IntakeAdvice,
    ticket: Ticket,
    actor: Principal,
    threshold: Any,
    category_sure: bool,
    settings: dict[str, Any],
) -> list[str]:
    """Every reason the ticket waits for a dispatcher (empty: dispatch now)."""
    why = []
    if threshold is None:
        return ["本市未开启自动派单"]
    threshold = float(threshold)
    if actor.role not in CENTRE_INTAKE:
        why.append("受理人无派单权限")
    if not category_sure and (advice.category is None or advice.category.confidence < threshold):
        why.append("分类置信度不足")
    if advice.place is None or advice.place.source == "none":
        why.append("未识别到地址")
    elif advice.place.source != "given" and advice.place.confidence < threshold:
        why.append("地址置信度不足")
    if advice.lead is None:
        why.append("派单目录未给出承办单位")
    if advice.urgency is not None and advice.urgency.transfer:
        why.append(f"疑似紧急警情，建议转{advice.urgency.transfer}")
    if any(d.score >= float(settings["duplicate_block"]) for d in advice.duplicates):
        why.append("疑似重复诉求，待人工并单")
    if ticket.status not in ("received", "pending_dispatch"):
        why.append("工单已处理")
    return why


def _dispatch(
    ticket: Ticket, advice: IntakeAdvice, actor: Principal, category_sure: bool, *,
    db_session: Session,
) -> None:  # fmt: skip
    from jiesu.tickets.actions import take_action

    assert advice.lead is not None
    if not category_sure and advice.category is not None:
        _set(
            ticket,
            db_session,
            category_id=db_session.scalar(
                select(Category.id).where(Category.code == advice.category.code)
            ),
        )
        advice.applied.append("category")
    if (
        ticket.request_type is None
        and advice.request_type is not None
        and (advice.request_type.code in _request_type_names(db_session))
    ):
        _set(ticket, db_session, request_type=advice.request_type.code)
        advice.applied.append("request_type")
    db_session.flush()
    take_action(ticket.id, "dispatch", {"lead": advice.lead.unit,
                                        "note": f"智能派单：{advice.lead.reason}"},
                actor=actor, db_session=db_session)  # fmt: skip
    advice.auto_dispatched = True


def stored_advice(ticket_id: int, *, db_session: Session) -> IntakeAdvice | None:
    row = db_session.get(IntakeAdviceRow, ticket_id)
    return IntakeAdvice.model_validate(row.advice) if row else None


# ---- the city's own history as training data ----------------------------------------------


def training_rows(
    kind: str, *, db_session: Session, since: datetime | None = None, limit: int | None = None
) -> Iterator[tuple[str, str]]:
    """(text, label) from handled tickets: the category or request type as it stands now, so
    a dispatcher's re-categorisation (改分类) and a category fixed after an approved return are
    what the next model learns. Merged and rejected tickets teach nothing."""
    label = Category.code if kind == "category" else Ticket.request_type
    stmt = select(Ticket.title, Ticket.content, label).where(
        Ticket.status.notin_(("received", "pending_dispatch", "merged", "rejected")),
    )
    if kind == "category":
        stmt = stmt.join(Category, Category.id == Ticket.category_id)
    else:
        stmt = stmt.where(Ticket.request_type.is_not(None))
    if since is not None:
        stmt = stmt.where(Ticket.created_at >= since)
    stmt = stmt.order_by(Ticket.id.desc())
    if limit:
        stmt = stmt.limit(limit)
    for title, content, value in db_session.execute(stmt).yield_per(5000):
        yield f"{title}\n{content}", value


def corrections(*, db_session: Session, since: datetime | None = None) -> dict[str, int]:
    """How many tickets were corrected (re-categorised, or returned and re-dispatched) since a
    date: what a new model would learn that the active one has not."""
    stmt = select(Event.action, Event.data).where(
        or_(Event.action == "recategorize",
            and_(Event.action == "review_return")),
    )  # fmt: skip
    if since is not None:
        stmt = stmt.where(Event.at >= since)
    out = {"recategorize": 0, "return_approved": 0}
    for action, data in db_session.execute(stmt):
        if action == "recategorize":
            out["recategorize"] += 1
        elif (data or {}).get("approved"):
            out["return_approved"] += 1
    return out


# ---- training on the city's own history ---------------------------------------------------

MIN_TRAINING_ROWS = 50  # fewer handled tickets teach nothing worth suggesting
MODEL_NAMES = {"category": "事项分类（本市历史）", "request_type": "诉求类型（本市历史）"}


@dataclass(frozen=True)
class Trained:
    """A model trained on the city's history and its evaluation on the part kept apart."""

    kind: str
    model: TextClassifier
    evaluation: dict[str, Any]
    history_rows: int  # the handled tickets read
    training_rows: int  # those learnt from (a sample of each label when bounded)
    holdout_rows: int  # those kept apart for the evaluation
    seconds: float

    @property
    def source(self) -> str:
        return (f"本市历史工单 {self.history_rows} 件：学习 {self.training_rows} 件，"
                f"留出 {self.holdout_rows} 件评估")  # fmt: skip


def train_on_history(
    kind: str,
    rows: list[tuple[str, str]],
    *,
    holdout: float = 0.1,
    seed: int = 0,
    per_class: int | None = None,
) -> Trained:
    """Fit a classifier of `kind` on (text, label) rows from `training_rows`, keeping a random
    share apart for the evaluation stored with it. `per_class`: learn from at most this many
    rows of each label (and calibrate the confidence on the held-out part). Pure: no database."""
    import random
    import time

    from jiesu.intel.classify import calibrate, evaluate, train

    if len(rows) < MIN_TRAINING_ROWS:
        raise Invalid(f"历史工单太少（{len(rows)} 件），无法训练{KINDS[kind]}模型")
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    cut = max(int(len(rows) * (1 - holdout)), 1) if holdout > 0 else len(rows)
    learn = rows[:cut]
    if per_class:
        # The linear SVM's time grows faster than its rows (60,000 demo tickets: minutes);
        # a bounded sample of each class learns nearly as well in seconds.
        seen: dict[str, int] = {}
        sample = []
        for text, label in learn:
            if seen.get(label, 0) < per_class:
                seen[label] = seen.get(label, 0) + 1
                sample.append((text, label))
        learn = sample
    kept = rows[cut:] or rows[:cut]  # no holdout: the training rows (an optimistic figure)
    start = time.perf_counter()
    model = train([t for t, _ in learn], [y for _, y in learn], kind=kind, seed=seed,
                  calibration_folds=0 if per_class else 3)  # fmt: skip
    if per_class:  # the confidence calibrated on the held-out part: one pass, not three fits
        calibrate(model, [t for t, _ in kept], [y for _, y in kept])
    seconds = time.perf_counter() - start
    evaluation = evaluate(model, [t for t, _ in kept], [y for _, y in kept], latency_sample=50)
    return Trained(kind=kind, model=model, evaluation=evaluation, history_rows=len(rows),
                   training_rows=len(learn),
                   holdout_rows=len(rows) - cut, seconds=round(seconds, 1))  # fmt: skip


def register_trained(
    trained: Trained, *, db_session: Session, activate: bool = True, name: str | None = None
) -> IntelModel:
    """Store a model trained on the history as the next version of its kind (through the same
    checked path as a model file: saved, loaded, then registered)."""
    with tempfile.TemporaryDirectory(prefix="jiesu-train-") as tmp:
        folder = Path(tmp)
        trained.model.save(folder, evaluation=trained.evaluation)
        row = register_model(folder, db_session=db_session, activate=activate,
                             name=name or MODEL_NAMES[trained.kind])  # fmt: skip
    row.source = trained.source[:300]
    return row


def kinds_without_active_model(*, db_session: Session) -> list[str]:
    active = set(db_session.scalars(select(IntelModel.kind).where(IntelModel.active)))
    return [kind for kind in KINDS if kind not in active]


DEMO_TRAINING_ROWS = 8_000  # per model, spread over its labels: seconds, not minutes


def train_missing_models(
    db: Any, *, limit: int = 200_000, holdout: float = 0.1, rows: int = DEMO_TRAINING_ROWS
) -> list[tuple[Trained, IntelModel]]:
    """Train, register and activate a model for each kind that has no active one, from the
    city's handled tickets (the demo's first start; idempotent: kinds with an active model are
    left alone). Takes the `Database`, not a session: the rows are read in one short read
    transaction, the fitting holds none, and each model is stored in its own write. A kind with
    too little history is skipped."""
    with db.read() as s:
        kinds = kinds_without_active_model(db_session=s)
        data = {kind: list(training_rows(kind, db_session=s, limit=limit)) for kind in kinds}
    done = []
    for kind in kinds:
        if len(data[kind]) < MIN_TRAINING_ROWS:
            continue
        labels = len({y for _, y in data[kind]})
        trained = train_on_history(kind, data[kind], holdout=holdout,
                                   per_class=max(20, rows // max(labels, 1)))  # fmt: skip
        with db.write() as s:
            row = register_trained(trained, db_session=s, activate=True)
            s.flush()
            s.expunge(row)
        done.append((trained, row))
    return done


# ---- the daily batch pass --------------------------------------------------------------------


def duplicate_groups(
    day_start: datetime, day_end: datetime, *, db_session: Session
) -> list[list[dict[str, Any]]]:
    """Same-event groups among one day's tickets (and the window before it, so a repeat of last
    week's order is found too); every group holds at least one ticket of that day. Each ticket
    is `{id, number, title, status, street}`, earliest first."""
    settings = intel_settings(db_session=db_session)
    window = timedelta(days=int(settings["duplicate_window_days"]))
    rows = db_session.execute(
        select(Ticket.id, Ticket.number, Ticket.title, Ticket.content, Ticket.created_at,
               Ticket.street_id, Ticket.lat, Ticket.lng, Ticket.category_id, Ticket.status)
        .where(Ticket.created_at >= day_start - window, Ticket.created_at < day_end,
               Ticket.master_id.is_(None))
        .order_by(Ticket.created_at)
    ).all()  # fmt: skip
    docs = [_doc(r) for r in rows]
    by_id = {r.id: r for r in rows}
    streets = {u.id: u.code for u in db_session.execute(select(Unit.id, Unit.code)).all()}
    out = []
    for group in duplicates.batch_groups(
        docs, window=window, max_distance_m=float(settings["duplicate_distance_m"])
    ):
        if not any(day_start <= by_id[i].created_at < day_end for i in group):
            continue
        out.append([
            {"id": i, "number": by_id[i].number, "title": by_id[i].title,
             "status": by_id[i].status, "street": streets.get(by_id[i].street_id or -1)}
            for i in group
        ])  # fmt: skip
    return out


def preview(
    *,
    title: str,
    content: str,
    address: str | None,
    street: str | None,
    category: str | None,
    phone: str | None,
    actor: Principal,
    db_session: Session,
) -> IntakeAdvice:
    """The suggestions for an intake form as the agent types: the same advice as at intake,
    on a ticket that is never stored."""
    draft = Ticket(title=title, content=content, address=address or None,
                   requester_phone=phone or None, urgent=False, tier=None)  # fmt: skip
    if street:
        unit = db_session.scalar(select(Unit).where(Unit.code == street, Unit.kind == "street"))
        if unit is not None:
            draft.street_id, draft.district_id = unit.id, unit.parent_id
    if category:
        draft.category = db_session.scalar(
            select(Category).where(Category.code == category, Category.active)
        )
        draft.category_id = draft.category.id if draft.category else None
    try:
        return advise(draft, actor=actor, db_session=db_session, automatic=False)
    finally:
        if draft in db_session:
            db_session.expunge(draft)
