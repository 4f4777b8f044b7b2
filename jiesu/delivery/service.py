"""Delivery of the outbox: fan-out into deliveries, sending, the delivery log (issue 15)."""

from __future__ import annotations

from jiesu.delivery.channels import Channel


def channels() -> list[Channel]:
    """The registered channels: webhooks (here), SMS and e-mail (jiesu.notices)."""
    from jiesu.delivery.webhooks import WebhookChannel
    from jiesu.notices.email import EmailChannel
    from jiesu.notices.sms import SmsChannel

    return [WebhookChannel(), SmsChannel(), EmailChannel()]
