"""Smart dispatch in the demo (issue 14 §1.1): `demo init` trains and activates the intake
models from the generated history, and the intake form shows every suggestion with its
confidence from the first ticket."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest import BACKENDS, Templates, principal, require_backend
from fastapi.testclient import TestClient
from sqlalchemy import select

from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.demo.generate import DEFAULT_PACK, generate
from jiesu.intel.models import IntelModel
from jiesu.intel.service import (
    KINDS,
    Trained,
    advise,
    kinds_without_active_model,
    train_missing_models,
)
from jiesu.tickets.models import Ticket
from jiesu.web.app import create_app

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)  # 14:00 in Beijing
TEXT = "朝阳区劲松八区3号楼门口路面塌陷了一个大坑"
PASSWORD = "demo12345"  # the Beijing pack's demo users'


@pytest.fixture(scope="module", params=BACKENDS)
def trained(
    request: pytest.FixtureRequest, templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Database, list[tuple[Trained, IntelModel]]]]:
    """The Beijing demo with a small generated history, trained as `demo init` trains it."""
    require_backend(request.param)
    urls = templates.fresh_url(request.param, False, tmp_path_factory.mktemp("demo_intel"))
    db = Database(next(urls))
    with db.write() as s:
        load_pack(read_pack(DEFAULT_PACK), db_session=s)
    generate(db, days=3, per_day=400, now=NOW, pack_dir=DEFAULT_PACK, metrics=False)
    done = train_missing_models(db)
    yield db, done
    db.dispose()
    next(urls, None)  # drops the PostgreSQL copy


def test_demo_init_trains_and_activates_both_models_once(
    trained: tuple[Database, list[tuple[Trained, IntelModel]]],
) -> None:
    db, done = trained
    assert sorted(t.kind for t, _ in done) == sorted(KINDS)
    with db.read() as s:
        rows = s.scalars(select(IntelModel).where(IntelModel.active)).all()
        assert kinds_without_active_model(db_session=s) == []
    assert {r.kind for r in rows} == set(KINDS) and all(r.version == 1 for r in rows)
    for row in rows:
        assert 0 < row.evaluation["macro_f1"] <= 1 and 0 < row.evaluation["accuracy"] <= 1
        assert row.rows > 0 and "留出" in row.source
    for t, _ in done:  # the evaluation is on rows kept apart, never on those learnt from
        assert t.holdout_rows > 0 and t.training_rows + t.holdout_rows <= t.history_rows
    assert train_missing_models(db) == []  # a second `demo init` does not retrain
    with db.read() as s:
        assert len(s.scalars(select(IntelModel)).all()) == len(KINDS)


def test_advice_on_a_realistic_text_has_a_category_and_a_lead_with_confidence(
    trained: tuple[Database, list[tuple[Trained, IntelModel]]],
) -> None:
    db, _ = trained
    actor = principal(db, "agent1")
    with db.read() as s:
        advice = advise(Ticket(title=TEXT, content=TEXT, urgent=False, tier=None), actor=actor,
                        db_session=s, automatic=False)  # fmt: skip
        s.rollback()
    assert advice.category is not None and 0 < advice.category.confidence <= 1
    assert advice.request_type is not None and 0 < advice.request_type.confidence <= 1
    assert advice.place is not None and advice.place.street_name, advice.place
    assert "劲松" in advice.place.street_name
    assert advice.lead is not None and advice.lead.confidence is not None
    assert 0 < advice.lead.confidence <= 1
    assert "category" not in advice.missing and "lead" not in advice.missing


def test_the_intake_panel_shows_four_suggestions_with_confidence_and_takes_them(
    trained: tuple[Database, list[tuple[Trained, IntelModel]]],
) -> None:
    db, _ = trained
    with TestClient(create_app(db), raise_server_exceptions=False) as client:
        csrf = _login(client, "agent1")
        r = client.post("/console/intake/suggest", data={"csrf_token": csrf, "content": TEXT})
        assert r.status_code == 200, r.text
        panel = r.text
        for field in ("category", "request_type", "place", "lead"):
            cell = re.search(rf'data-suggest="{field}">(.*?)</dd>', panel, re.S)
            assert cell is not None, field
            assert re.search(r"[高中低] \d+%", cell.group(1)), (field, cell.group(1))
            assert "data-take=" in cell.group(1), field
        assert 'data-take="dispatch.lead"' in panel and 'data-then="dispatch"' in panel
        # Without an address the panel says why there is no place (and no street-routed lead).
        vague = client.post("/console/intake/suggest",
                            data={"csrf_token": csrf, "content": "想咨询一下办理居住证需要什么材料"})  # fmt: skip
        assert "地址未识别" in vague.text
        assert not re.search(r"[A-Za-z]{4,}", re.sub(r"<[^>]+>", "", vague.text))


def test_the_admin_page_shows_the_active_models_with_their_evaluation(
    trained: tuple[Database, list[tuple[Trained, IntelModel]]],
) -> None:
    db, done = trained
    with TestClient(create_app(db), raise_server_exceptions=False) as client:
        _login(client, "admin")
        page = client.get("/console/admin/models")
        assert page.status_code == 200, page.text
    assert "暂无模型" not in page.text and page.text.count("使用中") == len(KINDS)
    for t, row in done:
        assert f"{KINDS[t.kind]}（本市历史）" in page.text and row.source in page.text
        assert f"{t.evaluation['macro_f1']:.3f}" in page.text


def _login(client: TestClient, username: str) -> str:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/login", data={"username": username, "password": PASSWORD,
                                    "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    home = client.get(r.headers["location"])
    return re.search(r'name="csrf-token" content="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]
