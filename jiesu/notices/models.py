"""Tables of notices (issue 15)."""

from __future__ import annotations
