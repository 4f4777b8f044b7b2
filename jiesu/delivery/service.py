"""Delivery of the outbox: fan-out into deliveries, sending, the delivery log (issue 15).

One round (`run_deliveries`, called by the worker, never by a request):

1. fan-out: outbox rows not yet routed (`delivered_at IS NULL`) are claimed (`FOR UPDATE SKIP
   LOCKED` on PostgreSQL); every channel names its targets and each becomes one `Delivery`,
   unique on (outbox_id, channel, key); the row is marked routed in the same transaction, so a
   crash repeats nothing and loses nothing;
2. claim: due deliveries (pending and `next_at <= now`, or `sending` whose lease ran out) are set
   `sending` with a lease, attempts + 1, and committed;
3. send: in a thread pool, outside any transaction, each with hard timeouts; each outcome is
   recorded in its own short transaction as it comes: delivered (once: a second success changes
   nothing), or back to pending after a backoff, or `dead` after N failures or a permanent
   refusal.

At-least-once sending, exactly-once recording: the idempotency id `msg_<delivery id>` is the
same on every try and on a redelivery, so a receiver can drop duplicates.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.delivery.channels import Channel, Message, Outcome, Target, idempotency_id
from jiesu.delivery.models import Delivery, DeliveryAttempt, WebhookSubscriber
from jiesu.errors import Conflict, NotFound
from jiesu.tickets.models import Outbox

log = logging.getLogger("jiesu.delivery")

# Seconds before the n-th retry (after the n-th failure); the last repeats. ±20 % jitter.
BACKOFF_S = (30, 120, 600, 1800, 3600, 7200, 14400)
JITTER = 0.2
DEFAULT_MAX_ATTEMPTS = 8
LEASE_S = 60  # longer than any send's hard timeout: an expired lease means the sender died
FANOUT_BATCH = 200
SEND_BATCH = 64
# One thread per claimed message, so every send of a batch starts at once and the batch's hard
# deadline (counted from submission) never cuts short a send that had to queue for a thread
# behind a hanging receiver's.
WORKERS = SEND_BATCH
GONE = 410  # a receiver's 410 switches its subscription off
WAIT_MARGIN_S = 5.0  # beyond a channel's own timeout before a send counts as timed out


def channels() -> list[Channel]:
    """The registered channels: webhooks (here), SMS and e-mail (jiesu.notices)."""
    from jiesu.delivery.webhooks import WebhookChannel
    from jiesu.notices.email import EmailChannel
    from jiesu.notices.sms import SmsChannel

    return [WebhookChannel(), SmsChannel(), EmailChannel()]


_registered = channels  # for run_deliveries, whose keyword `channels` hides the function


def max_attempts() -> int:
    raw = os.environ.get("JIESU_DELIVERY_MAX_ATTEMPTS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_ATTEMPTS


def backoff(failures: int, *, rng: random.Random | None = None) -> timedelta:
    """The wait after the `failures`-th failure: 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h …"""
    base = BACKOFF_S[min(max(failures, 1), len(BACKOFF_S)) - 1]
    factor = 1 + JITTER * (2 * (rng or random).random() - 1)
    return timedelta(seconds=base * factor)


# ---- one round ------------------------------------------------------------------------------


def run_deliveries(
    db: Database, *, now: datetime | None = None, channels: Sequence[Channel] | None = None
) -> int:
    """One round: fan out new outbox rows, send the due deliveries. Returns how many were
    tried (sent or timed out); skipped ones are recorded without a try. `channels`: these
    instead of the registered ones (tests, the bench)."""
    now = now or utcnow()
    chosen = list(channels) if channels is not None else _registered()
    while fan_out(db, chosen, now=now) == FANOUT_BATCH:
        pass
    return send_due(db, chosen, now=now)


def fan_out(db: Database, chosen: Sequence[Channel], *, now: datetime) -> int:
    """Route up to one batch of outbox rows into deliveries; returns the rows routed."""
    with db.read() as session:  # an idle round takes no write lock (SQLite has one)
        if session.scalar(select(Outbox.id).where(Outbox.delivered_at.is_(None)).limit(1)) is None:
            return 0
    with db.write() as session:
        stmt = (
            select(Outbox)
            .where(Outbox.delivered_at.is_(None))
            .order_by(Outbox.id)
            .limit(FANOUT_BATCH)
        )
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = session.scalars(stmt).all()
        values: list[dict[str, Any]] = []
        for row in rows:
            kind = _event_type(row)
            for channel in chosen:
                for target in channel.targets(row, db_session=session, now=now):
                    values.append(_delivery_values(row, target, kind, now))
            row.delivered_at = now
        if values:
            insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
            session.execute(
                insert(Delivery)
                .values(values)
                .on_conflict_do_nothing(index_elements=["outbox_id", "channel", "key"])
            )
        return len(rows)


def _event_type(row: Outbox) -> str:
    from jiesu.delivery.webhooks import event_type

    return event_type(row)


def _delivery_values(row: Outbox, target: Target, kind: str, now: datetime) -> dict[str, Any]:
    skipped = target.skip is not None
    due = max(now, target.not_before) if target.not_before else now
    return {
        "outbox_id": row.id,
        "ticket_id": row.ticket_id,
        "channel": target.channel,
        "key": target.key[:200],
        "address": target.address[:500],
        "body": target.body,
        "event_type": kind,
        "subscriber_id": target.subscriber_id,
        "status": "skipped" if skipped else "pending",
        "attempts": 0,
        "next_at": due,
        "last_error": target.skip[:500] if target.skip else None,
        "created_at": now,
    }


@dataclass
class _Claimed:
    message: Message
    channel: Channel


def claim_due(
    db: Database, chosen: Sequence[Channel], *, now: datetime, limit: int = SEND_BATCH
) -> list[_Claimed]:
    """Set up to `limit` due deliveries `sending` under a lease, attempts + 1; committed."""
    by_name = {c.name: c for c in chosen}
    claimed: list[_Claimed] = []
    due = or_(
        and_(Delivery.status == "pending", Delivery.next_at <= now),
        and_(Delivery.status == "sending", Delivery.lease_until <= now),
    )
    with db.read() as session:  # an idle round takes no write lock
        if session.scalar(select(Delivery.id).where(due).limit(1)) is None:
            return []
    with db.write() as session:
        stmt = (
            select(Delivery)
            .where(Delivery.channel.in_(list(by_name)), due)
            .order_by(Delivery.next_at, Delivery.id)
            .limit(limit)
        )
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        deliveries = session.scalars(stmt).all()
        for d in deliveries:
            d.status = "sending"
            d.attempts += 1
            d.lease_until = now + timedelta(seconds=LEASE_S)
            target = Target(
                channel=d.channel,
                key=d.key,
                address=d.address,
                body=dict(d.body or {}),
                subscriber_id=d.subscriber_id,
            )
            message = Message(d.id, idempotency_id(d.id), target, d.attempts)
            claimed.append(_Claimed(message, by_name[d.channel]))
        # A channel may load what its sends need (webhook secrets) and name messages that must
        # not go out (a subscriber switched off since the fan-out).
        drop: set[int] = set()
        for channel in chosen:
            prepare = getattr(channel, "prepare", None)
            mine = [c.message for c in claimed if c.channel is channel]
            if prepare is not None and mine:
                drop |= {m.delivery_id for m in prepare(mine, db_session=session)}
        if drop:
            for d in deliveries:
                if d.id in drop:
                    d.status, d.lease_until, d.attempts = "skipped", None, d.attempts - 1
                    d.last_error = "订阅已停用或删除 / subscriber inactive"
            claimed = [c for c in claimed if c.message.delivery_id not in drop]
    return claimed


def send_due(db: Database, chosen: Sequence[Channel], *, now: datetime) -> int:
    """Send every due delivery, batch after batch, recording each outcome as it arrives."""
    tried = 0
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="delivery")
    try:
        while True:
            claimed = claim_due(db, chosen, now=now)
            if not claimed:
                break
            tried += _send_batch(db, pool, claimed, now=now, started=started)
            if len(claimed) < SEND_BATCH:
                break
    finally:
        # A send still hanging past its hard limit was recorded as a timeout; its thread is
        # left to end on its own instead of holding up the round.
        pool.shutdown(wait=False, cancel_futures=True)
    return tried


def _send_batch(
    db: Database,
    pool: ThreadPoolExecutor,
    claimed: list[_Claimed],
    *,
    now: datetime,
    started: float,
) -> int:
    futures: dict[Future[Outcome], tuple[_Claimed, float]] = {}
    for item in claimed:
        futures[pool.submit(_timed_send, item)] = (item, time.monotonic())
    limit = max(_timeout_of(c.channel) for c in claimed) + WAIT_MARGIN_S
    deadline = time.monotonic() + limit
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=max(deadline - time.monotonic(), 0),
                             return_when=FIRST_COMPLETED)  # fmt: skip
        if not done:
            break
        for future in done:
            item, t0 = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # a channel's bug is a failed try, not a dead worker
                log.exception("delivery %s: channel %s failed", item.message.delivery_id,
                              item.channel.name)  # fmt: skip
                outcome = Outcome(False, f"发送出错 / {type(exc).__name__}")
            _record(db, item.message, outcome, now=_at(now, started),
                    duration_ms=int((time.monotonic() - t0) * 1000))  # fmt: skip
    for future in pending:  # still running past the hard limit: a timeout; the thread ends later
        item, t0 = futures[future]
        future.cancel()
        _record(db, item.message, Outcome(False, "超时 / timeout"), now=_at(now, started),
                duration_ms=int((time.monotonic() - t0) * 1000))  # fmt: skip
    return len(claimed)


def _timed_send(item: _Claimed) -> Outcome:
    return item.channel.send(item.message)


def _timeout_of(channel: Channel) -> float:
    return float(getattr(channel, "total_timeout", 10.0))


def _at(now: datetime, started: float) -> datetime:
    """The round's clock: `now` plus the time the round has taken (so pinned tests stay pinned)."""
    return now + timedelta(seconds=time.monotonic() - started)


def _record(
    db: Database, message: Message, outcome: Outcome, *, now: datetime, duration_ms: int
) -> None:
    """Record one try. A delivery already delivered takes nothing more (exactly-once
    recording); the outcome of a stale try (its lease ran out and a later try began) is logged
    without moving the delivery, unless it succeeded."""
    with db.write() as session:
        stmt = select(Delivery).where(Delivery.id == message.delivery_id)
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update()
        d = session.scalars(stmt).one_or_none()
        if d is None or d.status == "delivered":
            return
        session.add(
            DeliveryAttempt(
                delivery_id=d.id,
                attempt=message.attempt,
                at=now,
                ok=outcome.ok,
                status_code=outcome.status_code,
                detail=outcome.detail[:500],
                duration_ms=duration_ms,
            )
        )
        d.last_status_code = outcome.status_code
        if outcome.ok:
            d.status, d.delivered_at, d.lease_until, d.last_error = "delivered", now, None, None
            return
        d.last_error = outcome.detail[:500]
        if d.status != "sending" or d.attempts != message.attempt:
            return  # a later try owns the delivery now
        d.lease_until = None
        if not outcome.retry or d.attempts >= max_attempts():
            d.status = "dead"
            log.warning("delivery %s dead after %s tries: %s", d.id, d.attempts, outcome.detail)
            if outcome.status_code == GONE and d.subscriber_id is not None:
                # 410 Gone: the receiver says the endpoint is no more (Standard Webhooks); stop
                # sending it anything until the admin switches the subscription on again
                sub = session.get(WebhookSubscriber, d.subscriber_id)
                if sub is not None and sub.active:
                    sub.active = False
                    log.warning("webhook subscriber %s switched off: 410 Gone", sub.id)
        else:
            d.status = "pending"
            d.next_at = now + backoff(d.attempts)


# ---- redelivery (console, API) ----------------------------------------------------------------


def redeliver(delivery_id: int, *, db_session: Session, now: datetime) -> Delivery:
    """Send a dead (or waiting) delivery again now, with the same idempotency id; its failure
    count starts again."""
    d = db_session.get(Delivery, delivery_id)
    if d is None:
        raise NotFound("没有这条投递记录 / no such delivery")
    if d.status not in ("dead", "pending"):
        raise Conflict("只有失败或等待中的投递可以重新投递 / only dead or waiting deliveries")
    d.status, d.next_at, d.attempts, d.lease_until = "pending", now, 0, None
    return d


def redeliver_dead(subscriber_id: int, *, db_session: Session, now: datetime) -> int:
    """Every dead letter of one subscriber back to pending; returns how many."""
    result = db_session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber_id, Delivery.status == "dead")
        .values(status="pending", next_at=now, attempts=0, lease_until=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryFilter:
    status: str = ""
    channel: str = ""
    subscriber_id: int | None = None
    number: str = ""
    day_from: datetime | None = None
    day_to: datetime | None = None  # exclusive


def filtered(f: DeliveryFilter) -> Any:
    """The select of deliveries (newest first) matching the console's filters."""
    from jiesu.tickets.models import Ticket

    stmt = select(Delivery, Ticket.number).join(Ticket, Ticket.id == Delivery.ticket_id)
    if f.status:
        stmt = stmt.where(Delivery.status == f.status)
    if f.channel:
        stmt = stmt.where(Delivery.channel == f.channel)
    if f.subscriber_id:
        stmt = stmt.where(Delivery.subscriber_id == f.subscriber_id)
    if f.number:
        stmt = stmt.where(Ticket.number == f.number)
    if f.day_from:
        stmt = stmt.where(Delivery.created_at >= f.day_from)
    if f.day_to:
        stmt = stmt.where(Delivery.created_at < f.day_to)
    return stmt.order_by(Delivery.created_at.desc(), Delivery.id.desc())


def count(f: DeliveryFilter, *, db_session: Session) -> int:
    stmt = filtered(f).order_by(None).subquery()
    return int(db_session.scalar(select(func.count()).select_from(stmt)) or 0)


def attempts_of(ids: Iterable[int], *, db_session: Session) -> dict[int, list[DeliveryAttempt]]:
    out: dict[int, list[DeliveryAttempt]] = {}
    rows = db_session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id.in_(list(ids)))
        .order_by(DeliveryAttempt.id)
    )
    for row in rows:
        out.setdefault(row.delivery_id, []).append(row)
    return out


# ---- subscribers (the admin's) ---------------------------------------------------------------

EVENT_TYPE_PATTERN = r"^(\*|(ticket|deadline)\.(\*|[a-z_]{1,40}))$"


@dataclass(frozen=True)
class SubscriberIn:
    name: str
    url: str
    event_types: list[str]
    unit: str = ""  # a unit code: only notices about its tree
    personal_data: bool = False
    active: bool = True


def _checked(data: SubscriberIn, *, db_session: Session) -> tuple[list[str], int | None]:
    import re
    from urllib.parse import urlsplit

    from jiesu.errors import Invalid
    from jiesu.org.models import Unit

    if not data.name.strip() or len(data.name) > 100:
        raise Invalid("请填写名称（100 字以内） / name required", field="name")
    parts = urlsplit(data.url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or len(data.url) > 500:
        raise Invalid("推送地址须为 http(s) 网址 / url must be http(s)", field="url")
    types = sorted({t.strip() for t in data.event_types if t.strip()})
    if not types:
        raise Invalid("请至少选择一种事件 / at least one event type", field="event_types")
    for t in types:
        if not re.match(EVENT_TYPE_PATTERN, t):
            raise Invalid(f"事件类型无效：{t} / bad event type", field="event_types")
    unit_id = None
    if data.unit.strip():
        unit_id = db_session.scalar(select(Unit.id).where(Unit.code == data.unit.strip()))
        if unit_id is None:
            raise Invalid("没有这个单位 / no such unit", field="unit")
    return types, unit_id


def create_subscriber(
    data: SubscriberIn, *, db_session: Session, actor_id: int | None, now: datetime
) -> WebhookSubscriber:
    """A new subscriber with a fresh `whsec_` secret (the caller shows it once)."""
    from jiesu.delivery.webhooks import new_secret

    types, unit_id = _checked(data, db_session=db_session)
    sub = WebhookSubscriber(
        name=data.name.strip(), url=data.url.strip(), secret=new_secret(), event_types=types,
        unit_id=unit_id, personal_data=data.personal_data, active=data.active,
        created_by=actor_id, created_at=now,
    )  # fmt: skip
    db_session.add(sub)
    db_session.flush()
    return sub


def update_subscriber(
    subscriber_id: int, data: SubscriberIn, *, db_session: Session
) -> WebhookSubscriber:
    sub = get_subscriber(subscriber_id, db_session=db_session)
    types, unit_id = _checked(data, db_session=db_session)
    sub.name, sub.url, sub.event_types = data.name.strip(), data.url.strip(), types
    sub.unit_id, sub.personal_data, sub.active = unit_id, data.personal_data, data.active
    return sub


def rotate_secret(subscriber_id: int, *, db_session: Session, now: datetime) -> str:
    """A new secret; tries from now on are signed with it (the caller shows it once)."""
    from jiesu.delivery.webhooks import new_secret

    sub = get_subscriber(subscriber_id, db_session=db_session)
    sub.secret, sub.secret_rotated_at = new_secret(), now
    return sub.secret


def get_subscriber(subscriber_id: int, *, db_session: Session) -> WebhookSubscriber:
    sub = db_session.get(WebhookSubscriber, subscriber_id)
    if sub is None:
        raise NotFound("没有这个推送订阅 / no such subscriber")
    return sub


def subscribers(*, db_session: Session) -> list[WebhookSubscriber]:
    return list(db_session.scalars(select(WebhookSubscriber).order_by(WebhookSubscriber.id)))


def send_test(sub: WebhookSubscriber, *, now: datetime) -> Outcome:
    """A `ping` to the subscriber now, signed like any notice (from the admin's page; never
    recorded as a delivery). Bounded by the webhook timeouts."""
    from jiesu.delivery.webhooks import WebhookChannel

    channel = WebhookChannel()
    channel._secrets[sub.id] = sub.secret
    body = {"type": "ping", "timestamp": now.isoformat(),
            "data": {"message": "接诉即办平台推送测试 / jiesu webhook test"}}  # fmt: skip
    target = Target("webhook", f"sub{sub.id}", sub.url, body, subscriber_id=sub.id)
    return channel.send(Message(0, f"msg_test_{int(now.timestamp())}", target, 1))
