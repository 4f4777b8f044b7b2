"""Tables of callbacks (issue 15)."""

from __future__ import annotations
