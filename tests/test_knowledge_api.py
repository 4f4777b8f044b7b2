"""The knowledge base's API on SQLite and PostgreSQL: the whole workflow with a department user
and a supervisor, the published version answering while the next is reviewed, a return with a
note, who may not (another department's handler, an agent: 403), versions with what changed,
flags, search, and refusals that name the field.

The clock is pinned for every test (`time_machine`): the city's day is 2026-06-01."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import select

from jiesu.auth.passwords import hash_password
from jiesu.db.engine import Database
from jiesu.org.models import Unit, User

API = "/api/v1/knowledge"
NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
ANSWER = (
    "社会保障卡丢失后，请立即拨打服务电话或到任一社保卡服务网点办理挂失，再携带身份证办理补卡。"
)
ENTRY = {
    "title": "社保卡丢了如何挂失和补办",
    "answer": ANSWER,
    "category_code": "0101",
    "keywords": ["社保卡", "挂失"],
    "questions": ["社保卡丢了怎么办", "社保卡掉了去哪补"],
    "valid_from": "2026-01-01",
    "valid_to": "2027-12-31",
    "source": "《社会保障卡管理办法》（测试）",
    "link": "https://example.org/sbk",
}


@pytest.fixture
def api(client: TestClient, db: Database) -> Iterator[TestClient]:
    """The tiny city with a handler in 住建委 (C-ZJW) and one in 东区教委 (D1-JW), at NOW."""
    with db.write() as s:
        for username, unit_code in (("zjw.handler", "C-ZJW"), ("jw.handler", "D1-JW")):
            unit = s.scalar(select(Unit).where(Unit.code == unit_code))
            assert unit is not None
            s.add(User(username=username, name=username, role="handler", unit_id=unit.id,
                       password_hash=hash_password("secret123")))  # fmt: skip
    with time_machine.travel(NOW, tick=False):
        yield client


class As:
    """Requests as one user."""

    def __init__(self, client: TestClient, username: str) -> None:
        self.client, self.headers = client, auth(client, username)

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(API + path, params=params, headers=self.headers)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(API + path, json=body, headers=self.headers)

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.put(API + path, json=body, headers=self.headers)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def test_the_whole_workflow_through_the_api(api: TestClient) -> None:
    owner, centre, agent = As(api, "zjw.handler"), As(api, "supervisor1"), As(api, "agent1")
    made = owner.post("/entries", ENTRY)
    entry = ok(made, 201)
    code = entry["code"]
    assert made.headers["location"] == f"{API}/entries/{code}"
    assert entry["status"] == "draft" and entry["owner"]["code"] == "C-ZJW"
    assert entry["answering"] is None and entry["pending"]["state"] == "draft"
    assert entry["actions"] == ["edit", "submit", "discard"]
    assert agent.get(f"/entries/{code}").status_code == 404  # a draft is its unit's
    assert ok(agent.get("/entries"))["total"] == 0

    ok(owner.post(f"/entries/{code}/submit", {"note": "首次发布"}))
    assert ok(centre.get(f"/entries/{code}"))["actions"] == ["publish", "return"]
    published = ok(centre.post(f"/entries/{code}/publish", {"note": "同意"}))
    assert published["status"] == "published" and published["pending"] is None
    assert published["answering"]["number"] == 1
    assert published["answering"]["reviewed_by"]["username"] == "supervisor1"
    assert published["answering"]["published_at"].endswith("+08:00")  # city time at the edge

    seen = ok(agent.get(f"/entries/{code}"))
    assert seen["answering"]["answer"] == ANSWER and seen["actions"] == []
    found = ok(agent.get("/search", q="社保卡丢了怎么办"))
    assert found["hits"][0]["code"] == code
    hit = found["hits"][0]
    for start, end in hit["marks"]:
        assert 0 <= start < end <= len(hit["passage"])
    listed = ok(agent.get("/entries", q="社保卡"))
    assert [e["code"] for e in listed["items"]] == [code] and listed["total"] == 1


def test_published_answers_while_the_next_version_is_reviewed_and_returned(api: TestClient) -> None:
    owner, centre, agent = As(api, "zjw.handler"), As(api, "supervisor1"), As(api, "agent1")
    code = ok(owner.post("/entries", ENTRY), 201)["code"]
    ok(owner.post(f"/entries/{code}/submit"))
    ok(centre.post(f"/entries/{code}/publish"))

    new = dict(ENTRY, answer=ANSWER + "补卡期间可先使用电子社保卡。", change_note="加电子社保卡",
               keywords=["社保卡", "挂失", "电子社保卡"])  # fmt: skip
    draft = ok(owner.put(f"/entries/{code}/draft", new))
    assert draft["pending"]["number"] == 2 and draft["answering"]["number"] == 1
    ok(owner.post(f"/entries/{code}/submit"))
    for reader in (agent, owner):
        assert ok(reader.get(f"/entries/{code}"))["answering"]["answer"] == ANSWER
    assert ok(agent.get(f"/entries/{code}"))["pending"] is None  # work in progress is hidden
    assert ok(owner.get(f"/entries/{code}"))["pending"]["state"] == "submitted"
    assert ok(agent.get("/search", q="社保卡丢了怎么办"))["hits"][0]["code"] == code

    refused = centre.post(f"/entries/{code}/return")
    assert refused.status_code == 422 and refused.json()["field"] == "note"
    back = ok(centre.post(f"/entries/{code}/return", {"note": "请写明电子社保卡在哪里申领"}))
    assert back["pending"]["state"] == "returned"
    assert back["pending"]["review_note"] == "请写明电子社保卡在哪里申领"
    assert back["answering"]["number"] == 1

    new["answer"] += "可在手机上申领电子社保卡。"
    ok(owner.put(f"/entries/{code}/draft", new))
    ok(owner.post(f"/entries/{code}/submit"))
    done = ok(centre.post(f"/entries/{code}/publish"))
    assert done["answering"]["number"] == 2 and done["answering"]["answer"] == new["answer"]

    versions = ok(owner.get(f"/entries/{code}/versions"))
    assert [(v["number"], v["state"]) for v in versions] == [(1, "superseded"), (2, "published")]
    assert versions[1]["author"]["username"] == "zjw.handler"
    changes = {c["field"]: c for c in versions[1]["changes"]}
    assert set(changes) == {"answer", "keywords"}
    assert changes["keywords"]["added"] == ["电子社保卡"] and changes["keywords"]["removed"] == []
    assert changes["answer"]["label"] == "答复口径"
    first = {c["field"] for c in versions[0]["changes"]}
    assert {"title", "answer", "valid_to"} <= first


def test_versions_in_progress_are_shown_only_to_the_owner_and_the_centre(api: TestClient) -> None:
    owner, centre, agent = As(api, "zjw.handler"), As(api, "supervisor1"), As(api, "agent1")
    code = ok(owner.post("/entries", ENTRY), 201)["code"]
    ok(owner.post(f"/entries/{code}/submit"))
    ok(centre.post(f"/entries/{code}/publish"))
    ok(owner.put(f"/entries/{code}/draft", dict(ENTRY, answer=ANSWER + "（修订中）")))
    assert [v["number"] for v in ok(agent.get(f"/entries/{code}/versions"))] == [1]
    assert [v["number"] for v in ok(centre.get(f"/entries/{code}/versions"))] == [1, 2]
    assert ok(agent.get("/entries"))["items"][0]["pending_state"] is None
    assert ok(owner.get("/entries"))["items"][0]["pending_state"] == "draft"


def test_who_may_not(api: TestClient) -> None:
    owner, other, agent = As(api, "zjw.handler"), As(api, "jw.handler"), As(api, "agent1")
    centre = As(api, "supervisor1")
    code = ok(owner.post("/entries", ENTRY), 201)["code"]
    ok(owner.post(f"/entries/{code}/submit"))
    ok(centre.post(f"/entries/{code}/publish"))

    # Another department's handler: reads the published entry, writes nothing of it.
    assert ok(other.get(f"/entries/{code}"))["actions"] == []
    assert other.put(f"/entries/{code}/draft", ENTRY).status_code == 403
    assert other.post("/entries", dict(ENTRY, owner="C-ZJW")).status_code == 403
    # An agent edits nothing; a department does not review.
    assert agent.post("/entries", ENTRY).status_code == 403
    assert agent.put(f"/entries/{code}/draft", ENTRY).status_code == 403
    ok(owner.put(f"/entries/{code}/draft", dict(ENTRY, answer=ANSWER + "（新）")))
    ok(owner.post(f"/entries/{code}/submit"))
    for action in ("publish", "return", "withdraw"):
        assert owner.post(f"/entries/{code}/{action}", {"note": "x"}).status_code == 403
    # The centre withdraws it: nobody outside its owner and the centre sees it any more.
    gone = ok(centre.post(f"/entries/{code}/withdraw", {"note": "政策废止"}))
    assert gone["status"] == "withdrawn" and gone["answering"] is None
    assert agent.get(f"/entries/{code}").status_code == 404
    assert other.get(f"/entries/{code}").status_code == 404
    assert ok(agent.get("/search", q="社保卡丢了怎么办"))["hits"] == []


def test_refusals_name_the_field(api: TestClient) -> None:
    owner = As(api, "zjw.handler")
    cases = [
        (dict(ENTRY, owner="NOPE"), "owner"),
        (dict(ENTRY, category_code="9999"), "category_code"),
        (dict(ENTRY, valid_from="2026-05-01", valid_to="2026-04-01"), "valid_to"),
        (dict(ENTRY, link="javascript:alert(1)"), "link"),
        (dict(ENTRY, colour="red"), "colour"),
        (dict(ENTRY, keywords="社保卡"), "keywords"),
        (dict(ENTRY, valid_to="3000-01-01"), "valid_to"),
    ]
    for body, field in cases:
        r = owner.post("/entries", body)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["field"] == field, r.text
    code = ok(owner.post("/entries", dict(ENTRY, answer="太短")), 201)["code"]
    r = owner.post(f"/entries/{code}/submit")
    assert r.status_code == 422 and r.json()["field"] == "answer"
    assert "答复口径" in r.json()["message"] or "answer" in r.json()["message"]
    assert owner.get("/entries/KB-NOPE").status_code == 404
    assert owner.get("/entries", status="nonsense").status_code == 422


def test_recall_and_discard(api: TestClient) -> None:
    owner = As(api, "zjw.handler")
    code = ok(owner.post("/entries", ENTRY), 201)["code"]
    ok(owner.post(f"/entries/{code}/submit"))
    assert ok(owner.get(f"/entries/{code}"))["actions"] == ["recall"]
    assert owner.put(f"/entries/{code}/draft", ENTRY).status_code == 409  # under review
    assert ok(owner.post(f"/entries/{code}/recall"))["pending"]["state"] == "draft"
    r = owner.post(f"/entries/{code}/discard")
    assert r.status_code == 204
    assert owner.get(f"/entries/{code}").status_code == 404  # never published: gone


def test_a_flag_reaches_the_owner_who_resolves_it(api: TestClient) -> None:
    owner, centre, agent = As(api, "zjw.handler"), As(api, "supervisor1"), As(api, "agent1")
    other = As(api, "jw.handler")
    code = ok(owner.post("/entries", ENTRY), 201)["code"]
    ok(owner.post(f"/entries/{code}/submit"))
    ok(centre.post(f"/entries/{code}/publish"))

    flag = ok(
        agent.post(f"/entries/{code}/flags", {"reason": "outdated", "note": "补卡已免费"}), 201
    )
    assert (flag["entry"], flag["status"], flag["reason_name"]) == (code, "open", "政策已过时")
    assert flag["raised_by"]["username"] == "agent1" and flag["version_number"] == 1
    assert agent.post(f"/entries/{code}/flags", {"reason": "bad"}).status_code == 422
    r = agent.post(f"/entries/{code}/flags", {"reason": "wrong", "ticket_id": 99999})
    assert r.status_code == 422 and r.json()["field"] == "ticket_id"
    assert ok(agent.get(f"/entries/{code}"))["open_flags"] == 1

    mine = ok(owner.get("/flags", status="open"))
    assert [f["id"] for f in mine["items"]] == [flag["id"]]
    assert ok(other.get("/flags"))["total"] == 0
    assert agent.post(f"/flags/{flag['id']}/resolve", {"status": "fixed"}).status_code == 403
    assert other.post(f"/flags/{flag['id']}/resolve", {"status": "fixed"}).status_code == 403
    done = ok(owner.post(f"/flags/{flag['id']}/resolve", {"status": "fixed", "note": "已修订"}))
    assert (done["status"], done["resolved_by"]["username"]) == ("fixed", "zjw.handler")
    assert owner.post(f"/flags/{flag['id']}/resolve", {"status": "fixed"}).status_code == 409
    assert ok(agent.get(f"/entries/{code}"))["open_flags"] == 0
    assert ok(owner.get("/flags", status="open"))["total"] == 0
    assert owner.post("/flags/99999999/resolve", {"status": "fixed"}).status_code == 404


def test_search_with_odd_input_answers_and_finds_nothing(api: TestClient) -> None:
    agent = As(api, "agent1")
    for q in ("", "   ", "%_'\"\\", "？？？"):
        assert ok(agent.get("/search", q=q))["hits"] == []
    assert agent.get("/search", q="社保", limit=0).status_code == 422
