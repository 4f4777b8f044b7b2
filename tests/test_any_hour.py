"""The suite passes at any hour: the clock-sensitive modules, run with the clock pinned.

Each case runs those modules in a fresh pytest process whose clock (`time.time`, `datetime.now`,
in every thread, the live servers' included) starts at a chosen instant and runs on from there
(`JIESU_TEST_NOW`, read by tests/conftest.py). The instants are the ones that broke or could
break a clock-reading test: just after midnight in Beijing (the UTC date is still yesterday's),
04:19 (a test that expected tickets "today" failed CI then), and just before midnight; each on
the last day of a month and on 31 December (the month and the year roll over).

A test in these modules that needs a particular time pins its own clock (`now=`, or
`time_machine.travel`); none may read the machine's clock to decide what to expect.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLOCK_SENSITIVE = [
    "tests/test_dashboard.py",
    "tests/test_dashboard_browser.py",
    "tests/test_reports_build.py",
    "tests/test_reports_render.py",
    "tests/test_warnings.py",
    "tests/test_detect.py",
    "tests/test_deadlines.py",
    "tests/test_timelimits.py",
    "tests/test_worker.py",
    "tests/test_assessment_db.py",
    "tests/test_assessment_console.py",
    "tests/test_assessment_rules.py",
    "tests/test_demo.py",
]
INSTANTS = [
    "2026-11-30T00:05:00+08:00",
    "2026-11-30T04:19:00+08:00",
    "2026-11-30T23:55:00+08:00",
    "2026-12-31T00:05:00+08:00",
    "2026-12-31T04:19:00+08:00",
    "2026-12-31T23:55:00+08:00",
]


def test_the_clock_sensitive_modules_exist() -> None:
    missing = [m for m in CLOCK_SENSITIVE if not (ROOT / m).is_file()]
    assert not missing, f"renamed or removed: update CLOCK_SENSITIVE ({missing})"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("instant", INSTANTS)
def test_the_clock_sensitive_tests_pass_at(instant: str) -> None:
    if os.environ.get("JIESU_TEST_NOW"):
        pytest.skip("already inside a pinned-clock run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_CORE"))}
    env["JIESU_TEST_NOW"] = instant
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *CLOCK_SENSITIVE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert run.returncode == 0, (
        f"the clock-sensitive tests fail with the clock at {instant}:\n{run.stdout[-6000:]}"
        f"\n{run.stderr[-2000:]}"
    )
