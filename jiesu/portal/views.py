"""The citizen portal (placeholder while it is written)."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
