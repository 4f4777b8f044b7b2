"""Tables of open311 (issue 15)."""

from __future__ import annotations
