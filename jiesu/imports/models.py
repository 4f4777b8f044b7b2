"""Tables of imports (issue 15)."""

from __future__ import annotations
