"""Suggested entries (the base learns): consultations the base could not answer, clustered, for
their departments, with the orders behind each. Part 6 owns this file."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
