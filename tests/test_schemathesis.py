"""The whole OpenAPI under schemathesis (issue 13 acceptance): every operation, with an agent's and
an admin's token, on a fresh tiny city per backend; no answer may be a 5xx or break the response
schema the API publishes.

Bounded and reproducible: schemathesis' coverage phase (each parameter at and past its bounds,
missing, mistyped: deterministic), then a fixed number of derandomized examples per operation,
role and mode (data that fits the schema, and data that does not), no example database. Writes are welcome (the city
is thrown away). Signing out is taken with a token made for that one call, so the run keeps its
own tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from conftest import BACKENDS, Templates, auth, tiny_city
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import select

from jiesu.auth.service import issue
from jiesu.db.engine import Database
from jiesu.org.models import User
from jiesu.web.app import create_app

# In the browser tests' group: one worker runs them one after the other, so neither slows the
# other's timing-sensitive pages.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

OPENAPI = "/api/v1/openapi.json"
EXAMPLES = 8  # per operation, mode and role, after the coverage cases
ROLES = ("agent1", "admin1")
CHECKS = [not_a_server_error, response_schema_conformance]


def _operations() -> list[str]:
    """`METHOD path` of every operation the API publishes (read without a database)."""
    spec = create_app(Database("sqlite://")).openapi()
    return [f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item]


OPERATIONS = _operations()


@dataclass
class City:
    db: Database
    schema: Any
    headers: dict[str, dict[str, str]]

    def fresh_token(self, username: str) -> str:
        with self.db.write() as s:
            user = s.scalar(select(User).where(User.username == username))
            assert user is not None
            value, _ = issue(user, db_session=s, ttl=timedelta(hours=1))
        return value


@pytest.fixture(scope="module", params=BACKENDS)
def city(
    request: pytest.FixtureRequest, templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[City]:
    with tiny_city(str(request.param), templates, tmp_path_factory) as (client, db):
        headers = {name: auth(client, name) for name in ROLES}
        made = client.post("/api/v1/tickets", headers=headers["agent1"],
                           json={"channel": "phone", "content": "小区门口路灯坏了"})  # fmt: skip
        assert made.status_code == 201, made.text
        yield City(db, schemathesis.openapi.from_asgi(OPENAPI, client.app), headers)


def _coverage_cases(operation: Any) -> list[Any]:
    """Schemathesis' coverage phase for one operation: each parameter at and just past its
    bounds, missing, of the wrong type (deterministic, no randomness)."""
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=list(GenerationMode),
        generation_config=operation.schema.config.generation_for(
            operation=operation, phase="coverage"
        ),
        auth_storage=None,
        override=Override(),
        feedback=FeedbackSources(),
    )
    return list(generator)


def _fuzz(operation: Any, mode: GenerationMode, send: Callable[[Any], None]) -> None:
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        send(case)

    run()


@pytest.mark.parametrize("operation", OPERATIONS)
def test_no_5xx_and_no_schema_violation(city: City, operation: str) -> None:
    method, path = operation.split(" ", 1)
    found = city.schema[path][method]
    failures: list[str] = []
    calls = 0

    def send(case: Any, role: str, mode: str) -> None:
        nonlocal calls
        headers = dict(city.headers[role])
        if path == "/api/v1/auth/logout":  # sign out a token of its own
            headers["Authorization"] = f"Bearer {city.fresh_token(role)}"
        calls += 1
        try:
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # noted, not raised: every case is tried
            failures.append(
                f"{role} {mode}: {type(exc).__name__}: {exc}\n{case.as_curl_command()}"[:3000]
            )

    # Coverage: the roles take turns, every case is sent once.
    for i, case in enumerate(_coverage_cases(found)):
        send(case, ROLES[i % len(ROLES)], "coverage")
    # Fuzzing: random cases within the schema and outside it, for each role.
    for role in ROLES:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(found, mode, lambda case, r=role, m=mode.value: send(case, r, m))
            except Unsatisfiable:  # nothing to get wrong: an operation without parameters
                assert mode is GenerationMode.NEGATIVE
    assert calls >= len(ROLES), f"only {calls} requests were sent"
    assert not failures, "\n\n".join(list(dict.fromkeys(failures))[:5])
