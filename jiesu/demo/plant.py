"""Planted warning events for the demo history (filled by the warnings part).

`plant_all` is called by `demo.generate.generate` after the bulk load, before the timers are
scheduled and the rollups rebuilt; it returns how many tickets it added.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def plant_all(db: Any, ctx: Any, now: datetime, seed: int) -> int:
    return 0
