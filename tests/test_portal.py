"""The citizen portal at /portal: submit with photos, track with number + code, rate the reply.

On both databases. Photos go under a per-test var dir. The tests with photos near the 2 MB limit
need the request-size guard to let POST /portal/submit through up to SUBMIT_BODY_LIMIT.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import auth
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select, update

from jiesu.auth.models import AuditLog
from jiesu.citypack.load import PORTAL_USERNAME
from jiesu.db.engine import Database
from jiesu.org.models import User
from jiesu.portal.service import (
    CODE_ALPHABET,
    MAX_PHOTO_BYTES,
    SUBMIT_BODY_LIMIT,
    without_metadata,
)
from jiesu.tickets.models import Attachment, Event, Ticket
from jiesu.tickets.shapes import MAX_CONTENT

TICKETS = "/api/v1/tickets"
WRONG = "工单编号或查询码不正确"
XSS = "<script>alert(1)</script>"
STAFF_NAMES = ("东一承办人", "派单员乙", "话务员甲", "市民服务入口", "东一街道", "东二街道")


# Uploads and reports under each test's own directory (conftest.var_dir).
pytestmark = pytest.mark.usefixtures("var_dir")


# ---- helpers -------------------------------------------------------------------------------


def csrf(client: TestClient, path: str = "/portal/submit") -> str:
    r = client.get(path)
    assert r.status_code == 200, r.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    assert found, "the page has no CSRF field"
    return found.group(1)


def form(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "request_type": "complain",
        "content": "小区门口的路灯坏了一个多月，晚上出行很不方便，请尽快修复。",
        "title": "路灯不亮",
        "address": "幸福小区南门外人行道",
        "name": "张先生",
        "phone": "13800138000",
    }
    values.update(fields)
    return {k: v for k, v in values.items() if v is not None}


def image(fmt: str = "PNG", size: tuple[int, int] = (40, 30), noise: bool = False) -> bytes:
    if noise:  # random pixels do not compress: the file is about width × height × 3 bytes
        img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        img = Image.new("RGB", size, (200, 60, 40))
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def post_submit(
    client: TestClient, data: dict[str, Any], files: list[tuple[str, bytes, str]] | None = None,
    *, token: str | None = None,
) -> Any:  # fmt: skip
    body = dict(data)
    body["csrf_token"] = token if token is not None else csrf(client)
    parts = [("photos", f) for f in files or []]
    return client.post("/portal/submit", data=body, files=parts or None)


def submitted(client: TestClient, **fields: Any) -> tuple[str, str]:
    r = post_submit(client, form(**fields))
    assert r.status_code == 201, r.text
    number = re.search(r'id="number">(\d+)<', r.text)
    code = re.search(r'id="code"[^>]*>([A-Z0-9]{8})<', r.text)
    assert number and code, r.text
    return number.group(1), code.group(1)


def track(client: TestClient, number: str, code: str) -> Any:
    return client.post(
        "/portal/track",
        data={"number": number, "code": code, "csrf_token": csrf(client, "/portal/track")},
    )


def ticket_by_number(db: Database, number: str) -> Ticket:
    with db.read() as s:
        ticket = s.scalar(select(Ticket).where(Ticket.number == number))
    assert ticket is not None
    return ticket


class Staff:
    def __init__(self, client: TestClient) -> None:
        self.client, self.headers = client, {}

    def ok(self, username: str, ticket: int, action: str, **body: Any) -> dict[str, Any]:
        if username not in self.headers:
            self.headers[username] = auth(self.client, username)
        r = self.client.post(f"{TICKETS}/{ticket}/actions/{action}", json=body,
                             headers=self.headers[username])  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json())


REPLY = "已于本周更换路灯灯泡，经现场核实照明恢复正常。"


def handled_to_reply(client: TestClient, ticket_id: int) -> Staff:
    staff = Staff(client)
    staff.ok("dispatcher1", ticket_id, "dispatch", lead="S11", note="请东一街道尽快处理")
    staff.ok("s11.handler", ticket_id, "accept")
    staff.ok("s11.handler", ticket_id, "contact", note="内部备注：已电话联系诉求人")
    staff.ok("s11.handler", ticket_id, "reply", result="solved", content=REPLY)
    return staff


# ---- the pages -------------------------------------------------------------------------------


def test_home_offers_submit_and_track_and_staff_login(client: TestClient) -> None:
    r = client.get("/portal")
    assert r.status_code == 200
    assert "我要反映" in r.text and "查询进度" in r.text and "12345 市民服务热线" in r.text
    assert 'href="/portal/submit"' in r.text and 'href="/portal/track"' in r.text
    assert 'href="/login"' in r.text
    assert 'class="portal"' in r.text and "jiesu_csrf" in r.headers.get("set-cookie", "")


def test_submit_form_lists_the_request_types_with_complain_chosen(client: TestClient) -> None:
    r = client.get("/portal/submit")
    assert r.status_code == 200
    for name in ("咨询", "求助", "投诉", "举报", "建议", "表扬"):
        assert f">{name}</option>" in r.text
    assert '<option value="complain" selected>' in r.text
    assert 'type="file"' in r.text and "image/jpeg,image/png,image/webp" in r.text
    assert "保密：不向承办单位透露我的身份" in r.text and "使用当前位置" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # nothing loaded from outside


# ---- submitting ----------------------------------------------------------------------------


def test_submit_creates_a_web_ticket_with_a_tracking_code(client: TestClient, db: Database) -> None:
    r = post_submit(client, form(confidential="on"))
    assert r.status_code == 201, r.text
    assert "请记下工单编号和查询码" in r.text
    number = re.search(r'id="number">(\d+)<', r.text)
    code = re.search(r'id="code"[^>]*>([A-Z0-9]{8})<', r.text)
    assert number and code
    code_text = code.group(1)
    assert len(code_text) == 8 and set(code_text) <= set(CODE_ALPHABET)
    assert not set(code_text) & set("0O1IL")
    with db.read() as s:
        ticket = s.scalar(select(Ticket).where(Ticket.number == number.group(1)))
        assert ticket is not None
        portal = s.scalar(select(User).where(User.username == PORTAL_USERNAME))
        assert portal is not None
        assert ticket.channel == "web"
        assert ticket.tracking_hash == hashlib.sha256(code_text.encode()).hexdigest()
        assert ticket.created_by_id == portal.id
        assert ticket.requester_phone == "13800138000"
        assert ticket.requester_name == "张先生" and ticket.requester_confidential is True
        assert ticket.request_type == "complain" and ticket.title == "路灯不亮"
        assert ticket.address == "幸福小区南门外人行道"
        assert ticket.status == "received" and ticket.version == 1
        events = s.scalars(select(Event).where(Event.ticket_id == ticket.id)).all()
        assert [e.action for e in events] == ["receive"] and events[0].actor_id == portal.id


def test_submit_with_a_point_and_a_phone_written_loosely(client: TestClient, db: Database) -> None:
    number, _ = submitted(client, address="", lat="39.904211", lng="116.407394",
                          phone="+86 138-0013-8000")  # fmt: skip
    ticket = ticket_by_number(db, number)
    assert (ticket.lat, ticket.lng, ticket.address) == (39.904211, 116.407394, None)
    assert ticket.requester_phone == "13800138000"


def test_submit_without_csrf_is_403_and_writes_nothing(client: TestClient, db: Database) -> None:
    client.get("/portal/submit")  # the cookie is there; the form field is not
    r = client.post("/portal/submit", data=form())
    assert r.status_code == 403
    assert "页面已过期" in r.text and not r.text.lstrip().startswith("{")
    r = post_submit(client, form(), token="not-the-token")
    assert r.status_code == 403
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"phone": "12345"}, "联系电话格式不正确"),
        ({"phone": ""}, "请填写联系电话"),
        ({"content": "太短了"}, "至少 10 个字"),
        ({"content": "很" * (MAX_CONTENT + 1)}, f"不能超过 {MAX_CONTENT} 字"),
        ({"request_type": "secret"}, "请选择诉求类型"),
        ({"lat": "39.9"}, "位置信息无效"),
        ({"lat": "north", "lng": "east"}, "位置信息无效"),
        ({"lat": "91", "lng": "116"}, "位置信息无效"),
        ({"title": "题" * 101}, "标题不能超过"),
    ],
)
def test_invalid_input_rerenders_the_form_in_chinese(
    client: TestClient, db: Database, fields: dict[str, str], message: str
) -> None:
    r = post_submit(client, form(**fields))
    assert r.status_code == 422, r.text
    assert message in r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "小区门口的路灯坏了一个多月" in r.text or "content" in fields  # what was typed stays
    assert "幸福小区南门外人行道" in r.text
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0


def test_invalid_phone_keeps_every_entered_value(client: TestClient) -> None:
    r = post_submit(client, form(phone="abc", request_type="suggest", confidential="on"))
    assert r.status_code == 422
    assert "联系电话格式不正确" in r.text
    assert "小区门口的路灯坏了一个多月" in r.text and 'value="路灯不亮"' in r.text
    assert 'value="张先生"' in r.text and 'value="abc"' in r.text
    assert '<option value="suggest" selected>' in r.text
    assert re.search(r'name="confidential" id="confidential"[^>]* checked', r.text)


def test_a_photo_is_stored_by_checksum_with_its_row(
    client: TestClient, db: Database, var_dir: Path
) -> None:
    png = image("PNG")
    r = post_submit(client, form(), [("现场.png", png, "image/png")])
    assert r.status_code == 201, r.text
    number = re.search(r'id="number">(\d+)<', r.text)
    assert number
    ticket = ticket_by_number(db, number.group(1))
    png = without_metadata(png, "PNG")  # what is stored: the picture, re-encoded
    digest = hashlib.sha256(png).hexdigest()
    with db.read() as s:
        rows = s.scalars(select(Attachment).where(Attachment.ticket_id == ticket.id)).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.filename, row.content_type, row.size, row.sha256) == (
        "现场.png", "image/png", len(png), digest
    )  # fmt: skip
    stored = var_dir / "uploads" / digest[:2] / digest
    assert stored.read_bytes() == png


def test_the_content_decides_the_type_not_the_name_or_the_header(
    client: TestClient, db: Database
) -> None:
    jpeg, webp = image("JPEG"), image("WEBP")
    r = post_submit(client, form(), [("a.png", jpeg, "image/png"), ("b.gif", webp, "text/plain")])
    assert r.status_code == 201, r.text
    with db.read() as s:
        kinds = sorted(s.scalars(select(Attachment.content_type)).all())
    assert kinds == ["image/jpeg", "image/webp"]


@pytest.mark.parametrize(
    ("payload", "name"),
    [
        (b"this is a text file pretending to be a photo\n" * 10, "photo.jpg"),
        (b"", "empty.jpg"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 0 + b"JFIF broken", "broken.jpg"),
    ],
)
def test_a_file_that_is_not_an_image_is_refused(
    client: TestClient, db: Database, payload: bytes, name: str
) -> None:
    r = post_submit(client, form(), [(name, payload, "image/jpeg")])
    assert r.status_code == 422, r.text
    assert "第 1 张照片" in r.text and "小区门口的路灯坏了一个多月" in r.text
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0
        assert s.scalar(select(func.count()).select_from(Attachment)) == 0


def test_a_real_image_in_another_format_is_refused(client: TestClient) -> None:
    r = post_submit(client, form(), [("anim.gif", image("GIF"), "image/gif")])
    assert r.status_code == 422
    assert "格式不支持" in r.text


def test_a_fourth_photo_is_refused(client: TestClient, db: Database) -> None:
    files = [(f"{i}.png", image("PNG", (10 + i, 10)), "image/png") for i in range(4)]
    r = post_submit(client, form(), files)
    assert r.status_code == 422
    assert "最多上传 3 张照片" in r.text
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0


def test_three_photos_near_the_size_limit_go_through(client: TestClient, db: Database) -> None:
    """Needs the size guard to allow SUBMIT_BODY_LIMIT on POST /portal/submit."""
    files = [(f"{i}.png", image("PNG", (800, 800), noise=True), "image/png") for i in range(3)]
    assert all(1_800_000 < len(f[1]) <= MAX_PHOTO_BYTES for f in files)
    assert sum(len(f[1]) for f in files) < SUBMIT_BODY_LIMIT - 64 * 1024
    r = post_submit(client, form(content="很" * 2000), files)
    assert r.status_code == 201, r.text[:500]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Attachment)) == 3


def test_a_photo_over_2_mb_is_refused_with_a_page(client: TestClient, db: Database) -> None:
    """Needs the size guard to allow SUBMIT_BODY_LIMIT on POST /portal/submit."""
    big = image("PNG", (900, 900), noise=True)
    assert len(big) > MAX_PHOTO_BYTES
    r = post_submit(client, form(), [("big.png", big, "image/png")])
    assert r.status_code == 422, r.text[:500]
    assert "超过 2 MB" in r.text
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0


def test_a_control_character_in_a_text_field_is_refused_with_a_page(client: TestClient) -> None:
    """Needs the size guard to leave the NUL check of POST /portal/submit to the portal (the
    photos are binary): the portal refuses control characters in its text fields itself."""
    for bad in ("\x00", "\x07"):
        r = post_submit(client, form(content=f"小区门口的路灯坏了一个多月{bad}请尽快修复"))
        assert r.status_code == 422, r.text[:300]
        assert "控制字符" in r.text and r.headers["content-type"].startswith("text/html")


def test_errors_under_portal_are_portal_pages(client: TestClient) -> None:
    r = client.get("/portal/no-such-page")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html") and "市民服务热线" in r.text
    assert 'href="/portal"' in r.text


def test_without_the_portal_account_the_portal_says_so(client: TestClient, db: Database) -> None:
    with db.write() as s:
        s.execute(update(User).where(User.username == PORTAL_USERNAME).values(active=False))
    r = post_submit(client, form())
    assert r.status_code == 503
    assert "城市数据包尚未加载" in r.text and r.headers["content-type"].startswith("text/html")


def test_typed_markup_is_shown_escaped(client: TestClient) -> None:
    r = post_submit(client, form(title=XSS, content=XSS + " 楼道灯坏了", address=XSS, name=XSS))
    assert r.status_code == 201, r.text
    assert XSS not in r.text and "&lt;script&gt;" in r.text
    number = re.search(r'id="number">(\d+)<', r.text)
    code = re.search(r'id="code"[^>]*>([A-Z0-9]{8})<', r.text)
    assert number and code
    r = track(client, number.group(1), code.group(1))
    assert r.status_code == 200
    assert XSS not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    # and on a form that comes back with an error
    r = post_submit(client, form(title=XSS, content=XSS, phone="x"))
    assert r.status_code == 422 and XSS not in r.text and "&lt;script&gt;" in r.text


# ---- tracking --------------------------------------------------------------------------------


def test_track_shows_the_request_and_its_status(client: TestClient) -> None:
    number, code = submitted(client)
    r = track(client, number, code.lower())  # case does not matter
    assert r.status_code == 200, r.text
    assert number in r.text and "已受理" in r.text
    assert "路灯不亮" in r.text and "小区门口的路灯坏了一个多月" in r.text
    assert "幸福小区南门外人行道" in r.text and "受理时间" in r.text
    assert "评价办理结果" not in r.text
    assert "13800138000" not in r.text  # the requester's phone is not shown back
    for name in STAFF_NAMES:
        assert name not in r.text


def test_a_wrong_code_and_an_unknown_number_get_the_same_answer(client: TestClient) -> None:
    number, code = submitted(client)
    wrong_code = track(client, number, "ABCDEFGH" if code != "ABCDEFGH" else "HGFEDCBA")
    unknown = track(client, "2099010199999", code)
    malformed = track(client, "not-a-number", code)
    for r in (wrong_code, unknown, malformed):
        assert r.status_code == 404
        assert WRONG in r.text and "小区门口" not in r.text
    # the pages differ only in the number typed back into the form
    assert wrong_code.text.replace(number, "N") == unknown.text.replace("2099010199999", "N")


def test_a_phone_ticket_has_no_code_and_cannot_be_tracked(client: TestClient) -> None:
    r = client.post(TICKETS, json={"channel": "phone", "content": "电话反映的诉求内容十个字以上"},
                    headers=auth(client, "agent1"))  # fmt: skip
    assert r.status_code == 201
    number = r.json()["number"]
    assert track(client, number, "").status_code == 422
    assert track(client, number, "ABCDEFGH").status_code == 404


def test_the_eleventh_wrong_code_from_one_address_is_429(client: TestClient, db: Database) -> None:
    number, code = submitted(client)
    for i in range(10):  # ten numbers, so that no number's own limit (5) is reached
        assert track(client, number if i < 4 else f"20990101{i:05d}", "WRONGCDE").status_code == 404
    r = track(client, number, "WRONGCDE")
    assert r.status_code == 429 and "查询失败次数过多" in r.text
    r = track(client, number, code)  # even the right code waits now
    assert r.status_code == 429
    with db.read() as s:
        failures = s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "track_failed")
        )
    assert failures == 10


def test_reply_is_shown_only_after_the_centre_audits_it_then_the_citizen_rates(
    client: TestClient, db: Database
) -> None:
    number, code = submitted(client)
    ticket_id = ticket_by_number(db, number).id
    staff = handled_to_reply(client, ticket_id)
    r = track(client, number, code)
    assert r.status_code == 200 and "办理中" in r.text
    assert REPLY not in r.text and "评价办理结果" not in r.text

    staff.ok("dispatcher1", ticket_id, "audit", passed=True, note="内部审核意见：合格")
    r = track(client, number, code)
    assert r.status_code == 200
    assert REPLY in r.text and "已解决" in r.text and "已办结" in r.text
    assert "评价办理结果" in r.text and 'action="/portal/rate"' in r.text
    for hidden in (*STAFF_NAMES, "内部备注", "内部审核意见", "请东一街道尽快处理"):
        assert hidden not in r.text

    token = csrf(client, "/portal/track")
    rating = {"number": number, "code": code, "solved": "no", "satisfaction": "dissatisfied",
              "note": "灯修好了但又坏了", "csrf_token": token}  # fmt: skip
    r = client.post("/portal/rate", data=rating)
    assert r.status_code == 200, r.text
    assert "感谢您的评价" in r.text and "已评价" in r.text and "评价办理结果" not in r.text
    with db.read() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        assert (ticket.status, ticket.solved, ticket.satisfaction) == (
            "evaluated", False, "dissatisfied"
        )  # fmt: skip
        last = s.scalars(
            select(Event).where(Event.ticket_id == ticket_id).order_by(Event.seq.desc())
        ).first()
        assert last is not None and last.action == "rate"
        assert last.note == "灯修好了但又坏了" and last.data["reached"] is True

    r = client.post("/portal/rate", data={**rating, "solved": "yes", "satisfaction": "satisfied"})
    assert r.status_code == 409
    assert "您已评价过该工单" in r.text and " / " not in r.text.split('id="flash"')[1][:200]
    with db.read() as s:
        again = s.get(Ticket, ticket_id)
        assert again is not None and again.satisfaction == "dissatisfied"


def test_rating_needs_the_right_code_and_complete_fields(client: TestClient, db: Database) -> None:
    number, code = submitted(client)
    ticket_id = ticket_by_number(db, number).id
    staff = handled_to_reply(client, ticket_id)
    token = csrf(client, "/portal/track")
    base = {"number": number, "code": code, "solved": "yes", "satisfaction": "satisfied",
            "csrf_token": token}  # fmt: skip
    r = client.post("/portal/rate", data=base)  # replied, not yet audited
    assert r.status_code == 409 and "尚未办结" in r.text
    staff.ok("dispatcher1", ticket_id, "audit", passed=True)
    r = client.post("/portal/rate", data={**base, "code": "WRONGCDE"})
    assert r.status_code == 404 and WRONG in r.text
    r = client.post("/portal/rate", data={**base, "satisfaction": "ecstatic"})
    assert r.status_code == 422 and "请选择满意度" in r.text and "评价办理结果" in r.text
    r = client.post("/portal/rate", data={k: v for k, v in base.items() if k != "solved"})
    assert r.status_code == 422 and "请选择问题是否已解决" in r.text
    r = client.post("/portal/rate", data={**base, "csrf_token": "forged"})
    assert r.status_code == 403
    with db.read() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None and ticket.status == "audited"
    assert client.post("/portal/rate", data=base).status_code == 200


def test_the_citizen_role_only_exists_through_the_portal(client: TestClient, db: Database) -> None:
    """Staff cannot rate through the API: `rate` is for the citizen principal alone."""
    number, _ = submitted(client)
    ticket_id = ticket_by_number(db, number).id
    staff = handled_to_reply(client, ticket_id)
    staff.ok("dispatcher1", ticket_id, "audit", passed=True)
    r = client.post(f"{TICKETS}/{ticket_id}/actions/rate",
                    json={"solved": True, "satisfaction": "satisfied"},
                    headers=auth(client, "callback1"))  # fmt: skip
    assert r.status_code == 403


def test_a_rejected_request_shows_the_advice_and_a_direct_answer_shows_it(
    client: TestClient, db: Database
) -> None:
    staff = Staff(client)
    number, code = submitted(client)
    ticket_id = ticket_by_number(db, number).id
    staff.ok("agent1", ticket_id, "reject", reason="litigation",
             channel_advice="请向人民法院提起诉讼")  # fmt: skip
    r = track(client, number, code)
    assert r.status_code == 200
    assert "不予受理" in r.text and "属诉讼范围" in r.text and "请向人民法院提起诉讼" in r.text
    staff.ok("agent1", ticket_id, "close")
    r = track(client, number, code)
    assert "请向人民法院提起诉讼" in r.text and "已关闭" in r.text

    number, code = submitted(client, request_type="consult", content="请问社保卡补办需要哪些材料呢")
    ticket_id = ticket_by_number(db, number).id
    staff.ok("agent1", ticket_id, "answer", answer="携带身份证到任一社保网点即可办理补卡")
    r = track(client, number, code)
    assert "已答复" in r.text and "携带身份证到任一社保网点即可办理补卡" in r.text


def test_track_without_csrf_is_403(client: TestClient) -> None:
    number, code = submitted(client)
    r = client.post("/portal/track", data={"number": number, "code": code})
    assert r.status_code == 403


# ---- the same form sent twice ------------------------------------------------------------------


def test_sending_the_same_form_twice_makes_one_ticket(client: TestClient, db: Database) -> None:
    page = client.get("/portal/submit").text
    form_id = re.search(r'name="form_id" value="([^"]+)"', page)
    assert form_id, page
    first = post_submit(client, form(form_id=form_id.group(1)))
    again = post_submit(client, form(form_id=form_id.group(1)))  # a refresh, a double tap
    assert first.status_code == 201 and again.status_code == 200
    number = re.search(r'id="number">(\d+)<', first.text).group(1)  # type: ignore[union-attr]
    assert f'id="number">{number}<' in again.text and "已经提交过" in again.text
    assert 'id="code"' not in again.text  # the code was shown once
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1


def test_the_same_form_sent_again_with_other_content_is_not_lost(client: TestClient) -> None:
    form_id = re.search(r'name="form_id" value="([^"]+)"', client.get("/portal/submit").text)
    assert form_id
    assert post_submit(client, form(form_id=form_id.group(1))).status_code == 201
    changed = post_submit(
        client, form(form_id=form_id.group(1), content="另外一件事：楼道灯也坏了很久了")
    )
    assert changed.status_code == 409 and "已经提交过" in changed.text
    fresh = re.search(r'name="form_id" value="([^"]+)"', changed.text)
    assert fresh and fresh.group(1) != form_id.group(1)
    assert "楼道灯也坏了" in changed.text  # what was typed is kept


def test_a_photos_location_and_device_are_not_kept(
    client: TestClient, db: Database, var_dir: Path
) -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretPhone Inc."  # Make
    exif[0x8825] = {1: "N", 2: (39.0, 54.0, 0.0), 3: "E", 4: (116.0, 23.0, 0.0)}  # GPS
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(out, format="JPEG", exif=exif)
    jpeg = out.getvalue()
    assert b"SecretPhone" in jpeg
    r = post_submit(client, form(confidential="on"), [("gps.jpg", jpeg, "image/jpeg")])
    assert r.status_code == 201, r.text
    with db.read() as s:
        row = s.scalars(select(Attachment)).one()
    stored = (var_dir / "uploads" / row.sha256[:2] / row.sha256).read_bytes()
    assert b"SecretPhone" not in stored
    with Image.open(io.BytesIO(stored)) as picture:
        assert picture.format == "JPEG" and picture.size == (40, 30)
        assert not picture.getexif()
