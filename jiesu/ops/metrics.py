"""Prometheus metrics (first cut: the intake advice timer; the observability part completes it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Histogram

INTAKE_ADVICE = Histogram(
    "jiesu_intake_advice_seconds",
    "Time the intake's suggestions (classification, dispatch, duplicates) take per order.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


@contextmanager
def time_advice() -> Iterator[None]:
    """Times the block as one intake's advice."""
    with INTAKE_ADVICE.time():
        yield
