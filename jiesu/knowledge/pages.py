"""The knowledge base's console pages (知识库): browse and search, an entry with its versions,
drafting and review, the owner's work (drafts, returns, flags, expiring entries), XLSX import and
export. Part 5 owns this file."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
