"""The knowledge base on the call: the intake form's search-as-you-type panel, "answer with this
entry", and reporting an entry wrong from the call. Part 4 owns this file."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
