"""The e-mail channel (邮件): notices about a unit's orders to the addresses the unit gave
(系统管理 → 通知设置), by SMTP.

`targets` finds the unit's active addresses that want the row's notice kind and writes the mail
now: a Chinese subject and a plain-text body with the order number, title, status, deadline
(city time) and a link to the console page (`JIESU_PUBLIC_URL`). `send` speaks SMTP with a
timeout (`JIESU_SMTP_*`, docs/notices.md); the Message-ID is made from the idempotency id, so a
receiver can drop a repeated try. Without `JIESU_SMTP_HOST` the channel owes nothing.
"""

from __future__ import annotations

import logging
import os
import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING

from jiesu.delivery.channels import Message, Outcome, Target

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from jiesu.tickets.models import Outbox

log = logging.getLogger(__name__)

UNIT_RECIPIENTS = ("unit", "lead", "summoned", "centre", "supervisor", "discipline")
DEFAULT_TIMEOUT_S = 10.0
# Timer notices (deadline.<kind>) by name; actions are named by the lifecycle table.
TIMER_LABELS = {"warn": "临期预警", "overdue": "超期提醒", "promise": "容缺承诺到期"}
# The notice kinds a unit may choose on the admin page (empty choice = every notice).
EMAIL_KINDS: tuple[str, ...] = (
    "dispatch", "urge", "supervise", "escalate", "whistle", "review_return",
    "review_extension", "audit", "reopen", "warn", "overdue", "promise",
)  # fmt: skip


def kind_label(kind: str) -> str:
    from jiesu.tickets.lifecycle import BY_NAME

    if kind in TIMER_LABELS:
        return TIMER_LABELS[kind]
    return BY_NAME[kind].label if kind in BY_NAME else kind


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str
    password: str
    sender: str
    starttls: bool
    timeout: float

    @classmethod
    def from_env(cls) -> SmtpSettings:
        env = os.environ
        starttls = env.get("JIESU_SMTP_STARTTLS", "").strip().lower() in ("1", "true", "yes", "on")
        try:
            port = int(env.get("JIESU_SMTP_PORT") or (587 if starttls else 25))
        except ValueError:
            port = 25
        try:
            timeout = float(env.get("JIESU_SMTP_TIMEOUT") or DEFAULT_TIMEOUT_S)
        except ValueError:
            timeout = DEFAULT_TIMEOUT_S
        return cls(
            host=env.get("JIESU_SMTP_HOST", "").strip(), port=port,
            user=env.get("JIESU_SMTP_USER", ""), password=env.get("JIESU_SMTP_PASSWORD", ""),
            sender=env.get("JIESU_SMTP_FROM", "").strip() or "jiesu@localhost",
            starttls=starttls, timeout=timeout,
        )  # fmt: skip

    @property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2].strip("> ") or "jiesu.local"


class EmailChannel:
    name = "email"

    def __init__(self) -> None:
        self.smtp = SmtpSettings.from_env()
        # The deliverer's hard limit for one send: the timeout holds per SMTP command.
        self.total_timeout = self.smtp.timeout * 2

    @property
    def enabled(self) -> bool:
        return bool(self.smtp.host)

    def targets(self, row: Outbox, *, db_session: Session, now: datetime) -> list[Target]:
        if not self.enabled or row.recipient not in UNIT_RECIPIENTS or row.unit_id is None:
            return []
        from jiesu.notices.service import addresses_for
        from jiesu.notices.sms import notice_of

        kind = notice_of(row.payload or {}, row.recipient)
        addresses = addresses_for(row.unit_id, kind, db_session=db_session)
        if not addresses:
            return []
        body = self._mail(row, kind, db_session=db_session)
        return [Target("email", address, address, body) for address in addresses]

    def _mail(self, row: Outbox, kind: str, *, db_session: Session) -> dict[str, str]:
        from jiesu.callbacks.links import public_url
        from jiesu.settings import city_tz
        from jiesu.tickets.lifecycle import STATES
        from jiesu.tickets.models import Ticket

        payload = row.payload or {}
        ticket = db_session.get(Ticket, row.ticket_id)
        number = str(payload.get("number") or (ticket.number if ticket else ""))
        title = ticket.title if ticket else ""
        status = STATES.get(str(payload.get("status")), "")
        if not status and ticket is not None:
            status = STATES.get(ticket.status, ticket.status)
        due = payload.get("due") or (ticket.due_at.isoformat() if ticket and ticket.due_at else "")
        due_text = "—"
        if due:
            try:
                due_text = (
                    datetime.fromisoformat(str(due))
                    .astimezone(city_tz())
                    .strftime("%Y-%m-%d %H:%M")
                )
            except ValueError:
                due_text = str(due)
        label = kind_label(kind)
        lines = [
            f"{label}：工单 {number}",
            "",
            f"工单编号：{number}",
            f"标题：{title}",
            f"当前状态：{status or '—'}",
            f"办理时限：{due_text}（北京时间）" if due else "办理时限：—",
        ]
        if payload.get("message"):
            lines += ["", str(payload["message"])]
        lines += ["", f"在工作台查看：{public_url()}/console/tickets/{row.ticket_id}", "",
                  "此邮件由 12345 接诉即办平台自动发送，请勿直接回复。"]  # fmt: skip
        return {
            "subject": f"【12345】{label}：工单 {number} {title}"[:150],
            "text": "\n".join(lines),
        }

    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.smtp.sender
        mail["To"] = message.target.address
        mail["Subject"] = message.target.body.get("subject", "")
        mail["Message-ID"] = f"<{message.idempotency_id}@{self.smtp.domain}>"
        mail["Date"] = format_datetime(datetime.now().astimezone())
        mail.set_content(message.target.body.get("text", ""))
        return mail

    def send(self, message: Message) -> Outcome:
        if not self.enabled:
            return Outcome(False, "未配置邮件服务器 / no SMTP host configured")
        s = self.smtp
        mail = self.compose(message)
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                if s.starttls:
                    smtp.starttls()
                if s.user:
                    smtp.login(s.user, s.password)
                refused = smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0] if exc.recipients else 550
            return Outcome(False, f"收件人被拒 / recipient refused ({code})", status_code=code,
                           retry=code < 500)  # fmt: skip
        except smtplib.SMTPResponseException as exc:
            # 4xx is the server's "try again later"; 5xx a refusal that a retry won't change.
            return Outcome(False, f"SMTP {exc.smtp_code}: {_said(exc.smtp_error)}",
                           status_code=exc.smtp_code, retry=exc.smtp_code < 500)  # fmt: skip
        except TimeoutError:
            return Outcome(False, f"邮件服务器超时 / SMTP timeout ({s.timeout:g}s)")
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome(False, f"邮件服务器不可达 / SMTP unreachable: {type(exc).__name__}")
        if refused:
            return Outcome(False, "收件人被拒 / recipient refused", retry=False)
        log.info("email %s sent", message.idempotency_id)
        return Outcome(True, "邮件服务器已接收 / accepted", status_code=250)


def _said(error: bytes | str) -> str:
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return text[:200]
