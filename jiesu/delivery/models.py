"""Tables of delivery (issue 15)."""

from __future__ import annotations
