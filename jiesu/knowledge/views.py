"""The knowledge base's REST API (`/api/v1/knowledge/…`): search, entries and their workflow,
versions, flags. Part 1 (core) owns this file."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/knowledge", tags=["知识库"])
