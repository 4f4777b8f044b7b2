"""The bodies of `POST /api/v1/tickets` the benches send: a history ticket's own text.

Shared by `bench/load.py`, `bench/intake_profile.py` and `bench/volume.py`, so that each measures
the same intake: the title, content and address of a ticket already in the database, a caller
with a new mobile number, and half the time the category and request type an agent picked.
"""

from __future__ import annotations

import random
from typing import Any

NAMES = ("王先生", "李女士", "张先生", "刘女士", "陈先生", "杨女士", "赵先生", "黄女士")


def intake_body(
    rng: random.Random,
    title: str,
    content: str,
    address: str | None,
    request_type: str | None,
    category: str | None,
) -> dict[str, Any]:
    """One create's JSON from one history row (what `SELECT title, content, address,
    request_type, category.code` gives)."""
    body: dict[str, Any] = {
        "channel": "phone",
        "title": title[:200],
        "content": content[:5_000],
        "requester": {
            "name": rng.choice(NAMES),
            "phone": f"1{rng.choice('3578')}{rng.randrange(10**9):09d}",
        },
    }
    if address:
        body["address"] = address[:300]
    if category and rng.random() < 0.5:  # an agent who picked the category, or did not
        body["category_code"] = category
        if request_type:
            body["request_type"] = request_type
    return body
