"""Tables of calls (issue 15)."""

from __future__ import annotations
